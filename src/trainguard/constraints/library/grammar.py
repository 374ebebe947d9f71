r"""Small context-free grammars: a BNF-like file format and an Earley recogniser that also answers "which next
characters keep this prefix completable?" (what the bad-mass surrogate needs).

Grammar file syntax (one rule per line; the first rule is the start symbol):

    # a comment; blank lines are ignored
    plan   ::= step | plan ";" ws step      # alternatives separated by |
    step   ::= "do " word                   # quoted terminals use JSON string escapes ("\n", "\"", "\u00e9")
    word   ::= [a-z]+                       # a character class is a Python regex class: [a-z], [^"\\]
    ws     ::= [ \t]*                       # X* (zero or more), X+ (one or more), X? (optional)
           |   "--"                         # a line starting with | continues the rule above
    empty  ::= ""                           # "" is the empty string

Rule names are `[A-Za-z_][A-Za-z0-9_-]*`; there are no parentheses (name a rule instead). The recogniser works
character by character, left recursion included; nullable rules follow Aycock & Horspool (2002).
"""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

Symbol = str | re.Pattern[str]  # a rule name, or a one-character terminal
Item = tuple[str, int, int, int]  # (rule, alternative, dot, origin)

_TOKEN = re.compile(
    r"\s*(?:(?P<str>\"(?:[^\"\\]|\\.)*\")|(?P<cls>\[\^?\]?(?:[^\]\\]|\\.)*\])"
    r"|(?P<name>[A-Za-z_][\w-]*)|(?P<op>[|*+?])|(?P<bad>\S))"
)
_RULE = re.compile(r"^\s*(?P<name>[A-Za-z_][\w-]*)\s*::=(?P<body>.*)$")


class GrammarError(ValueError):
    """A grammar file that does not parse; the message names the file and the line."""


@dataclass
class Grammar:
    start: str
    rules: dict[str, list[tuple[Symbol, ...]]]
    nullable: set[str] = field(default_factory=set)


def _strip_comment(line: str) -> str:
    """Drop a `#` comment that is outside quotes and classes."""
    for match in _TOKEN.finditer(line):
        if match.group("bad") == "#":
            return line[: match.start("bad")]
    return line


def _parse_body(body: str, grammar: Grammar, where: str) -> list[tuple[Symbol, ...]]:
    """Alternatives of one rule body; `X*`, `X+`, `X?` become fresh left-recursive rules."""
    alts: list[list[Symbol]] = [[]]
    last: tuple[Symbol, ...] | None = None  # the group an operator applies to (a literal is one group)
    for match in _TOKEN.finditer(body):
        kind, text = match.lastgroup, match.group(match.lastgroup or 0)
        if kind == "str":
            last = tuple(re.compile(re.escape(ch), re.DOTALL) for ch in json.loads(text))
            alts[-1].extend(last)
        elif kind == "cls":
            try:
                last = (re.compile(text, re.DOTALL),)
            except re.error as err:
                raise GrammarError(f"{where}: bad character class {text}: {err}") from None
            alts[-1].extend(last)
        elif kind == "name":
            last = (text,)
            alts[-1].extend(last)
        elif text == "|":
            alts.append([])
            last = None
        elif kind == "op":
            if not last:
                raise GrammarError(f"{where}: {text!r} must follow a symbol")
            fresh = f"<{len(grammar.rules)}>"  # cannot clash with a rule name
            grammar.rules[fresh] = {"*": [(), (fresh, *last)], "+": [last, (fresh, *last)], "?": [(), last]}[text]
            del alts[-1][len(alts[-1]) - len(last) :]
            alts[-1].append(fresh)
            last = None
        elif text in '"[':
            what = "quoted string" if text == '"' else "character class"
            raise GrammarError(f"{where}: unterminated {what}")
        else:
            raise GrammarError(f"{where}: unexpected {text!r} (expected a quoted string, [class], name or | * + ?)")
    return [tuple(alt) for alt in alts]


def parse_grammar(text: str, source: str = "<grammar>") -> Grammar:
    """Parse the file format above; every error names `source` and the line."""
    grammar = Grammar(start="", rules={})
    used: dict[str, int] = {}  # rule name -> first line that uses it
    current = None
    for number, raw in enumerate(text.splitlines(), start=1):
        where = f"{source}, line {number}"
        line = _strip_comment(raw)
        if not line.strip():
            continue
        rule = _RULE.match(line)
        if rule:
            current = rule.group("name")
            if current in grammar.rules:
                raise GrammarError(f"{where}: rule {current!r} is defined twice")
            grammar.rules[current] = []
            grammar.start = grammar.start or current
            body = rule.group("body")
        elif line.lstrip().startswith("|") and current:
            body = line.lstrip()[1:]
        else:
            raise GrammarError(f"{where}: expected `name ::= ...` or a continuation line starting with |")
        try:
            alts = _parse_body(body, grammar, where)
        except json.JSONDecodeError as err:
            raise GrammarError(f"{where}: bad quoted string: {err.msg}") from None
        grammar.rules[current].extend(alts)
        for alt in alts:
            for sym in alt:
                if isinstance(sym, str):
                    used.setdefault(sym, number)
    if not grammar.start:
        raise GrammarError(f"{source}: no rules")
    for name, number in used.items():
        if name not in grammar.rules:
            raise GrammarError(f"{source}, line {number}: rule {name!r} is used but never defined")
    grammar.nullable = _nullable(grammar.rules)
    return grammar


def load_grammar(path: Path | str) -> Grammar:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise GrammarError(f"{path}: cannot read grammar file ({err})") from None
    return parse_grammar(text, str(path))


def _nullable(rules: dict[str, list[tuple[Symbol, ...]]]) -> set[str]:
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, alts in rules.items():
            if name not in nullable and any(all(isinstance(s, str) and s in nullable for s in a) for a in alts):
                nullable.add(name)
                changed = True
    return nullable


class Earley:
    """Recognises a grammar's language; the chart is kept so prefixes are checked one character at a time."""

    def __init__(self, grammar: Grammar) -> None:
        self.g = grammar
        self.chart: list[list[Item]] = []
        self._add_set([(grammar.start, k, 0, 0) for k in range(len(grammar.rules[grammar.start]))])

    def _add_set(self, seeds: list[Item]) -> None:
        """Close a new Earley set under prediction and completion."""
        i, rules = len(self.chart), self.g.rules
        items, seen = list(dict.fromkeys(seeds)), set(seeds)
        self.chart.append(items)

        def add(item: Item) -> None:
            if item not in seen:
                seen.add(item)
                items.append(item)

        for name, alt, dot, origin in items:  # `items` grows while we walk it
            rhs = rules[name][alt]
            if dot < len(rhs):
                sym = rhs[dot]
                if isinstance(sym, str):
                    for k in range(len(rules[sym])):
                        add((sym, k, 0, i))
                    if sym in self.g.nullable:  # Aycock-Horspool: skip over a rule that can match nothing
                        add((name, alt, dot + 1, origin))
            else:
                for n2, a2, d2, o2 in self.chart[origin]:
                    rhs2 = rules[n2][a2]
                    if d2 < len(rhs2) and rhs2[d2] == name:
                        add((n2, a2, d2 + 1, o2))

    def expected(self) -> list[re.Pattern[str]]:
        """Terminals that may come next after the characters fed so far."""
        out = {}
        for name, alt, dot, _ in self.chart[-1]:
            rhs = self.g.rules[name][alt]
            if dot < len(rhs) and not isinstance(rhs[dot], str):
                out[id(rhs[dot])] = rhs[dot]
        return list(out.values())

    def feed(self, ch: str) -> bool:
        """Consume one character; False when no completion of the text so far is in the language."""
        seeds = []
        for name, alt, dot, origin in self.chart[-1]:
            rhs = self.g.rules[name][alt]
            if dot < len(rhs) and not isinstance(rhs[dot], str) and rhs[dot].fullmatch(ch):
                seeds.append((name, alt, dot + 1, origin))
        self._add_set(seeds)
        return bool(seeds)

    def complete(self) -> bool:
        return any(n == self.g.start and o == 0 and d == len(self.g.rules[n][a]) for n, a, d, o in self.chart[-1])


def recognises(grammar: Grammar, text: str) -> bool:
    parser = Earley(grammar)
    return all(parser.feed(ch) for ch in text) and parser.complete()


def viable_next(grammar: Grammar, text: str, candidates: str) -> list[set[str]]:
    """For each prefix text[:i] (i = 0..len), the candidates c with text[:i] + c still completable."""
    parser, out = Earley(grammar), []
    for i in range(len(text) + 1):
        terminals = parser.expected()
        out.append({c for c in candidates if any(t.fullmatch(c) for t in terminals)})
        if i < len(text) and not parser.feed(text[i]):
            out.extend(set() for _ in range(len(text) - i))
            break
    return out
