"""A procedural generator of small stdin→stdout Python programs at graded difficulty.

A program reads one value (an integer, a list of integers, or a word), applies `difficulty` steps drawn from a
table, and prints the result. Each step is a pair: the source text a model reads, and the same computation in
Python that gives the expected output without executing any generated text. Higher difficulty adds steps and
unlocks loops and conditionals.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Value = Any  # int | list[int] | str


@dataclass(frozen=True)
class Step:
    kind: str  # arithmetic | strings | lists | loops | conditionals
    level: int  # lowest difficulty that may use it
    source: str  # lines with {placeholders}, applied to the variable `v`
    apply: Callable[..., Value]  # (value, **params) -> value
    params: Callable[[random.Random], dict[str, Any]]


def _prefix(xs: list[int]) -> list[int]:
    out, acc = [], 0
    for x in xs:
        acc += x
        out.append(acc)
    return out


def _dedupe(s: str) -> str:
    out = ""
    for c in s:
        if not out or out[-1] != c:
            out += c
    return out


def _shift(s: str, k: int) -> str:
    return "".join(chr((ord(c) - 97 + k) % 26 + 97) if "a" <= c <= "z" else c for c in s)


def _affine_loop(v: int, r: int, a: int, b: int, m: int) -> int:
    for _ in range(r):
        v = (v * a + b) % m
    return v


INT_STEPS = [
    Step("arithmetic", 1, "v = v + {a}", lambda v, a: v + a, lambda r: {"a": r.randint(1, 20)}),
    Step("arithmetic", 1, "v = v * {a}", lambda v, a: v * a, lambda r: {"a": r.randint(2, 9)}),
    Step("arithmetic", 1, "v = v - {a}", lambda v, a: v - a, lambda r: {"a": r.randint(1, 20)}),
    Step("arithmetic", 2, "v = v % {m}", lambda v, m: v % m, lambda r: {"m": r.randint(3, 50)}),
    Step("arithmetic", 2, "v = v // {d}", lambda v, d: v // d, lambda r: {"d": r.randint(2, 5)}),
    Step(
        "conditionals",
        3,
        "if v % 2 == 0:\n    v = v // 2\nelse:\n    v = 3 * v + 1",
        lambda v: v // 2 if v % 2 == 0 else 3 * v + 1,
        lambda r: {},
    ),
    Step(
        "conditionals",
        3,
        "if v > {t}:\n    v = v - {a}\nelse:\n    v = v * {b}",
        lambda v, t, a, b: v - a if v > t else v * b,
        lambda r: {"t": r.randint(0, 50), "a": r.randint(1, 30), "b": r.randint(2, 5)},
    ),
    Step(
        "loops",
        4,
        "for _ in range({r}):\n    v = (v * {a} + {b}) % {m}",
        _affine_loop,
        lambda r: {"r": r.randint(2, 5), "a": r.randint(2, 7), "b": r.randint(1, 9), "m": r.randint(11, 97)},
    ),
    Step("loops", 4, "v = sum(int(c) for c in str(abs(v)))", lambda v: sum(int(c) for c in str(abs(v))), lambda r: {}),
]
LIST_STEPS = [
    Step("lists", 1, "v = [x + {a} for x in v]", lambda v, a: [x + a for x in v], lambda r: {"a": r.randint(1, 9)}),
    Step("lists", 1, "v = [x * {a} for x in v]", lambda v, a: [x * a for x in v], lambda r: {"a": r.randint(2, 5)}),
    Step("lists", 1, "v = v[::-1]", lambda v: v[::-1], lambda r: {}),
    Step("lists", 2, "v = sorted(v)", sorted, lambda r: {}),
    Step("lists", 2, "v = v[{i}:] + v[:{i}]", lambda v, i: v[i:] + v[:i], lambda r: {"i": r.randint(1, 3)}),
    Step(
        "conditionals",
        3,
        "v = [x // 2 if x % 2 == 0 else x * 3 for x in v]",
        lambda v: [x // 2 if x % 2 == 0 else x * 3 for x in v],
        lambda r: {},
    ),
    Step(
        "loops",
        4,
        "acc, out = 0, []\nfor x in v:\n    acc += x\n    out.append(acc)\nv = out",
        _prefix,
        lambda r: {},
    ),
]
STR_STEPS = [
    Step("strings", 1, "v = v[::-1]", lambda v: v[::-1], lambda r: {}),
    Step("strings", 1, "v = v.upper()", str.upper, lambda r: {}),
    Step("strings", 1, "v = v + '{t}'", lambda v, t: v + t, lambda r: {"t": r.choice(["ab", "xy", "!", "zz"])}),
    Step("strings", 2, "v = v[{i}:] + v[:{i}]", lambda v, i: v[i:] + v[:i], lambda r: {"i": r.randint(1, 3)}),
    Step(
        "strings",
        2,
        "v = v.replace('{a}', '{b}')",
        lambda v, a, b: v.replace(a, b),
        lambda r: {"a": r.choice("aeiou"), "b": r.choice("xyz")},
    ),
    Step("strings", 2, "v = ''.join(sorted(v))", lambda v: "".join(sorted(v)), lambda r: {}),
    Step(
        "loops",
        3,
        "out = ''\nfor c in v:\n    if not out or out[-1] != c:\n        out += c\nv = out",
        _dedupe,
        lambda r: {},
    ),
    Step(
        "loops",
        4,
        "v = ''.join(chr((ord(c) - 97 + {k}) % 26 + 97) if 'a' <= c <= 'z' else c for c in v)",
        _shift,
        lambda r: {"k": r.randint(1, 25)},
    ),
]
KINDS = {
    "int": ("v = int(input())", INT_STEPS, "print(v)", lambda r: str(r.randint(-20, 99))),
    "list": (
        "v = [int(x) for x in input().split()]",
        LIST_STEPS,
        "print(' '.join(str(x) for x in v))",
        lambda r: " ".join(str(r.randint(0, 30)) for _ in range(r.randint(2, 6))),
    ),
    "str": (
        "v = input().strip()",
        STR_STEPS,
        "print(v)",
        lambda r: "".join(r.choice("abcdeghilmnorstu") for _ in range(r.randint(3, 8))),
    ),
}


@dataclass(frozen=True)
class Program:
    source: str
    input: str
    output: str
    difficulty: int


def parse_input(kind: str, text: str) -> Value:
    return {"int": int, "list": lambda t: [int(x) for x in t.split()], "str": str.strip}[kind](text)


def show(value: Value) -> str:
    return " ".join(str(x) for x in value) if isinstance(value, list) else str(value)


THOUGHTLESS_INPUTS = ("", "0", "1")  # with the wanted output itself: answers that read nothing into the program


def output_for(kind: str, applied: list[tuple[Step, dict[str, Any]]], text: str) -> str | None:
    """What the program prints for `text` (computed in Python, never by running its source); None if it fails."""
    try:
        value = parse_input(kind, text)
        for step, params in applied:
            value = step.apply(value, **params)
    except (ValueError, TypeError, ZeroDivisionError, IndexError, OverflowError):
        return None
    return show(value)


def generate(rng: random.Random, difficulty: int) -> Program:
    """A program of `difficulty` (1–5) steps, one input it accepts, and the output for that input. Programs
    for which an empty input, 0, 1 or the output itself also gives that output are drawn again: such an
    answer would pass without reading the program."""
    while True:
        kind = rng.choice(sorted(KINDS))
        read, table, write, make_input = KINDS[kind]
        usable = [s for s in table if s.level <= difficulty]
        steps = [rng.choice(usable) for _ in range(difficulty)]
        if difficulty >= 3 and not any(s.kind in ("loops", "conditionals") for s in steps):
            steps[-1] = rng.choice([s for s in usable if s.kind in ("loops", "conditionals")])
        text = make_input(rng)
        applied = [(step, step.params(rng)) for step in steps]
        output = output_for(kind, applied, text)
        assert output is not None, "a generated input must be accepted"
        if all(output_for(kind, applied, alt) != output for alt in (*THOUGHTLESS_INPUTS, output)):
            break
    lines = [read, *(step.source.format(**params) for step, params in applied), write]
    return Program("\n".join(lines) + "\n", text, output, difficulty)
