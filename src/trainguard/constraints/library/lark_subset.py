"""A simple subset of Lark grammars, translated line for line into our `.cfg` format (lark is not a dependency):
rules and terminals, "literals", one-class /[a-z]/ regexes, names, | and * + ?. Anything else fails naming the
line and the subset, so a user knows what to rewrite."""

import re
from pathlib import Path

from trainguard.constraints.library.grammar import Grammar, GrammarError, load_grammar, parse_grammar

LARK_TOKEN = re.compile(
    r"\s*(?:(?P<str>\"(?:[^\"\\]|\\.)*\"i?)|(?P<re>/(?:[^/\\]|\\.)+/[a-z]*)|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<op>[|*+?])|(?P<bad>\S))"
)
LARK_RULE = re.compile(r"^\s*[?!]?(?P<name>[A-Za-z_]\w*)\s*:(?P<body>.*)$")
LARK_CLASS = re.compile(r"(\[\^?\]?(?:[^\]\\]|\\.)*\])([*+?]?)")
LARK_SUBSET = (
    'the supported .lark subset: `name: ...` rules and TERMINALS, "literals", /[class]/ regexes (optionally '
    "with * + ?), names, | and the * + ? operators; no %import/%ignore, ( ) groups, [ ] optionals, ~ or -> "
    "(rewrite those, or write a .cfg: see trainguard.constraints.library.grammar)"
)


def lark_to_cfg(text: str, source: str = "<lark>") -> str:
    """A `.lark` grammar in the simple subset above as our `.cfg` text, line for line (a comment becomes a blank
    line) so errors name the .lark file's lines. Lark starts at `start`; `load_grammar_file` sets that."""
    lines: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}, line {number}"
        line = strip_lark_comment(raw)
        if not line.strip():
            lines.append("")
            continue
        if line.lstrip().startswith("%"):
            raise GrammarError(f"{where}: {line.strip().split()[0]} is not supported; {LARK_SUBSET}")
        rule = LARK_RULE.match(line)
        if rule:
            head, body = f"{rule.group('name')} ::=", rule.group("body")
        elif line.lstrip().startswith("|") and any(lines):
            head, body = "  |", line.lstrip()[1:]
        else:
            raise GrammarError(f"{where}: expected `name: ...` or a line starting with |; {LARK_SUBSET}")
        lines.append(f"{head} {translate_lark_body(body, where)}")
    return "\n".join(lines) + "\n"


def strip_lark_comment(line: str) -> str:
    """The line before a `//` comment that is outside "literals" and /regexes/ (a regex never starts with /)."""
    i, quote = 0, ""
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif line.startswith("//", i):
            return line[:i]
        elif ch in '"/':
            quote = ch
        i += 1
    return line


def translate_lark_body(body: str, where: str) -> str:
    out = []
    for match in LARK_TOKEN.finditer(body):
        kind, token = match.lastgroup, match.group(match.lastgroup or 0)
        if kind == "str" and token.endswith("i"):
            raise GrammarError(f"{where}: case-insensitive literal {token} is not supported; {LARK_SUBSET}")
        if kind == "re":
            pattern, flags = token[1:].rsplit("/", 1)
            cls = LARK_CLASS.fullmatch(pattern)
            if flags or not cls:
                raise GrammarError(f"{where}: regex {token} is not one [class]; {LARK_SUBSET}")
            token = cls.group(1) + cls.group(2)
        elif kind == "bad":
            raise GrammarError(f"{where}: {token!r} is not supported; {LARK_SUBSET}")
        if kind == "op" and token != "|" and out:
            out[-1] += token  # X* stays one token
        else:
            out.append(token)
    return " ".join(out)


def load_grammar_file(path: Path | str) -> Grammar:
    """A `.cfg` grammar, or a `.lark` one in the translated subset; GrammarError names the file and line."""
    path = Path(path)
    if path.suffix == ".cfg":
        return load_grammar(path)
    if path.suffix == ".lark":
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise GrammarError(f"{path}: cannot read grammar file ({err})") from None
        grammar = parse_grammar(lark_to_cfg(text, str(path)), str(path))
        if "start" in grammar.rules:
            grammar.start = "start"
        return grammar
    raise GrammarError(f"{path}: grammar files are .cfg (our format) or .lark (a simple subset)")
