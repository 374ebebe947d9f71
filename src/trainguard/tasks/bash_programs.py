"""What a `bash_command` answer may say: one pipeline of known programs with known flags over relative paths.

The table is the task's definition of a valid command, not a safety boundary (the sandbox is): it leaves out every
program or flag that prints text of the answer's choosing (`echo`, `printf`, `seq`, `sed`, `find -printf`),
writes files (`sort -o`), waits forever (`tail -f`, `sleep`) or runs other programs (`xargs`, `find -exec`), so a
valid command can only report what the tree holds.
"""

from dataclasses import dataclass

import bashlex
import bashlex.errors


@dataclass(frozen=True)
class Program:
    """The flags of one program: short letters alone, short letters that take a value, and long options."""

    short: str = ""
    valued: str = ""  # e.g. "n" for `head -n 2`, `head -n2`
    long: tuple[str, ...] = ()  # "--lines=" takes a value after '='
    numeric: bool = False  # `head -3` means `head -n 3`


PROGRAMS: dict[str, Program] = {
    "cat": Program("nbsE", long=("--number",)),
    "ls": Program("1aArRSpFd", long=("--reverse",)),
    "wc": Program("lwcmL", long=("--lines", "--words", "--bytes", "--chars")),
    "head": Program("qv", "nc", ("--lines=", "--bytes="), numeric=True),
    "tail": Program("qv", "nc", ("--lines=", "--bytes="), numeric=True),
    "sort": Program("nrufbhVs", "kt", ("--reverse", "--numeric-sort", "--unique", "--key=")),
    "grep": Program(
        "ivclLnhHowxrREFsq", "em", ("--count", "--ignore-case", "--invert-match", "--include=", "--files-with-matches")
    ),
    "uniq": Program("cdui", long=("--count",)),
    "cut": Program("s", "dfc", ("--delimiter=", "--fields=")),
    "tr": Program("dsc"),
    "nl": Program("", "bw"),
    "tac": Program(),
    "rev": Program(),
    "find": Program(),  # its tests are in FIND_TESTS
}
# find's tests and whether each takes a value; `-exec`, `-delete`, `-printf`, `-fprint` and the like are left out.
FIND_TESTS = {
    "-name": True,
    "-iname": True,
    "-path": True,
    "-type": True,
    "-maxdepth": True,
    "-mindepth": True,
    "-size": True,
    "-empty": False,
    "-print": False,
    "-not": False,
}
# Characters that would make bash read the text as more than one pipeline of plain words: lists, background jobs,
# redirections, substitutions, subshells, groups, expansions, escapes, comments and more lines. Inside single
# quotes everything is literal but a line break; inside double quotes `$`, backticks and backslashes still act.
UNQUOTED = set(";&<>()`$\\{}#\n\r")
DOUBLE_QUOTED = set("`$\\\n\r")
MAX_CHARS = 400
MAX_COMMANDS = 6


class InvalidCommand(ValueError):
    """Why an answer is not a valid command (the message goes into the score's details)."""


def special_character(text: str) -> str | None:
    """The first character that bash would treat as more than a word, a quote or a pipe, given its quoting."""
    quote = ""
    for c in text:
        if quote == "'":
            if c == "'":
                quote = ""
            elif c in "\n\r":
                return c
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c in DOUBLE_QUOTED:
                return c
        elif c in "'\"":
            quote = c
        elif c in UNQUOTED:
            return c
    return None


def command_words(text: str) -> list[list[str]]:
    """The words of each command of the pipeline `text`, quotes removed; raises InvalidCommand with the reason."""
    if len(text) > MAX_CHARS:
        raise InvalidCommand(f"longer than {MAX_CHARS} characters")
    if found := special_character(text):
        raise InvalidCommand(f"{found!r} is not allowed (one pipeline of plain commands)")
    try:
        parts = bashlex.parse(text)
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError) as err:
        raise InvalidCommand(f"bash cannot parse it: {err}") from None
    if len(parts) != 1:
        raise InvalidCommand("not one command")
    node = parts[0]
    nodes = node.parts if node.kind == "pipeline" else [node]
    commands = [n for n in nodes if n.kind != "pipe"]
    if len(commands) > MAX_COMMANDS:
        raise InvalidCommand(f"more than {MAX_COMMANDS} commands in the pipeline")
    words = []
    for command in commands:
        if command.kind != "command" or any(p.kind != "word" or getattr(p, "parts", None) for p in command.parts):
            raise InvalidCommand("only plain words, joined by pipes")
        words.append([p.word for p in command.parts])
    return words


def check_operand(word: str) -> None:
    """Paths and patterns stay inside the tree: nothing absolute, nothing above it, no home folder."""
    parent = [s for s in word.split("/") if s == ".." or (s.startswith(".") and any(c in s for c in "*?["))]
    if word.startswith(("/", "~")) or parent:  # `.?` or `.*` may match `..` where bash's globskipdots is off
        raise InvalidCommand(f"{word!r} reaches outside the tree")


def check_flags(name: str, args: list[str]) -> None:
    """Every flag of `name` is in its table; values of flags that take one are consumed and not checked."""
    program = PROGRAMS[name]
    i, options = 0, True
    while i < len(args):
        word = args[i]
        i += 1
        if not options or word == "-" or not word.startswith("-"):
            check_operand(word)
            continue
        if word == "--":
            options = False
        elif word.startswith("--"):
            key = word.split("=", 1)[0] + ("=" if "=" in word else "")
            if key not in program.long:
                raise InvalidCommand(f"{name}: unknown option {word.split('=', 1)[0]}")
        elif program.numeric and word[1:].isdigit():
            continue
        else:
            for k, letter in enumerate(word[1:], start=1):
                if letter in program.valued:
                    if k == len(word) - 1:  # the value is the next word
                        if i >= len(args):
                            raise InvalidCommand(f"{name}: -{letter} needs a value")
                        i += 1
                    break  # the rest of the word is the value
                if letter not in program.short:
                    raise InvalidCommand(f"{name}: unknown flag -{letter}")


def check_find(args: list[str]) -> None:
    """`find [path...] [tests]`: starting paths first, then tests from FIND_TESTS with their values."""
    i = 0
    while i < len(args) and not args[i].startswith("-"):
        check_operand(args[i])
        i += 1
    while i < len(args):
        test = args[i]
        if test not in FIND_TESTS:
            raise InvalidCommand(f"find: unknown or unsafe test {test}")
        if FIND_TESTS[test]:
            if i + 1 >= len(args):
                raise InvalidCommand(f"find: {test} needs a value")
            check_operand(args[i + 1])
            i += 1
        i += 1


def check_command(text: str) -> list[list[str]]:
    """The pipeline's words when every program and flag is known and every path stays in the tree; raises
    InvalidCommand with the first reason otherwise."""
    pipeline = command_words(text.strip())
    for name, *args in pipeline:
        if name not in PROGRAMS:
            raise InvalidCommand(f"unknown program {name!r} (known: {', '.join(sorted(PROGRAMS))})")
        if name == "find":
            check_find(args)
        else:
            check_flags(name, args)
    return pipeline
