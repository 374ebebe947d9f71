"""Problem families for deduction: a statement, hidden stdin/stdout tests, and a reference solution.

Each family draws its parameters from the instance's generator; the expected outputs come from a Python
function of the family (never from running generated text), and the reference solution must pass them all
(a test runs every family's solution through the sandbox).
"""

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    statement: str  # with {placeholders} from params
    solution: str  # Python source with {placeholders}
    solve: Callable[[str, dict[str, Any]], str]  # (stdin, params) -> expected stdout
    make_input: Callable[[random.Random], str]
    params: Callable[[random.Random], dict[str, Any]] = lambda rng: {}


def ints_line(rng: random.Random, low: int = -50, high: int = 50, n: tuple[int, int] = (1, 10)) -> str:
    return " ".join(str(rng.randint(low, high)) for _ in range(rng.randint(*n)))


def word(rng: random.Random, letters: str = "abcde", n: tuple[int, int] = (1, 12)) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(*n)))


def run_length(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        j = i
        while j < len(s) and s[j] == s[i]:
            j += 1
        out.append(f"{s[i]}{j - i}")
        i = j
    return "".join(out)


def max_subarray(xs: list[int]) -> int:
    best = cur = xs[0]
    for x in xs[1:]:
        cur = max(x, cur + x)
        best = max(best, cur)
    return best


def balanced(s: str) -> bool:
    depth = 0
    for c in s:
        depth += 1 if c == "(" else -1
        if depth < 0:
            return False
    return depth == 0


def balanced_word(rng: random.Random) -> str:
    """A random balanced string (random ones rarely are, and a NO-printer would pass their tests)."""
    out, depth = [], 0
    for _ in range(rng.randint(1, 6) * 2):
        if depth and (rng.random() < 0.5 or depth >= 6):
            out.append(")")
            depth -= 1
        else:
            out.append("(")
            depth += 1
    return "".join(out) + ")" * depth


def fizz(n: int, a: int, b: int) -> str:
    words = {(True, True): "FizzBuzz", (True, False): "Fizz", (False, True): "Buzz"}
    return "\n".join(words.get((i % a == 0, i % b == 0), str(i)) for i in range(1, n + 1))


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split()]


FAMILIES = [
    Family(
        "sum_multiples",
        "Read integers from one line. Print the sum of those divisible by {m}.",
        "xs = [int(x) for x in input().split()]\nprint(sum(x for x in xs if x % {m} == 0))",
        lambda s, p: str(sum(x for x in ints(s) if x % p["m"] == 0)),
        ints_line,
        lambda rng: {"m": rng.randint(2, 7)},
    ),
    Family(
        "kth_largest",
        "Read integers from one line (at least {k} of them). Print the {k}-th largest value (counting repeats).",
        "xs = sorted((int(x) for x in input().split()), reverse=True)\nprint(xs[{k} - 1])",
        lambda s, p: str(sorted(ints(s), reverse=True)[p["k"] - 1]),
        lambda rng: ints_line(rng, n=(3, 10)),
        lambda rng: {"k": rng.randint(1, 3)},
    ),
    Family(
        "reverse_words",
        "Read a line of words separated by spaces. Print the words in reverse order, separated by single spaces.",
        "print(' '.join(input().split()[::-1]))",
        lambda s, p: " ".join(s.split()[::-1]),
        lambda rng: " ".join(word(rng, "abcdefgh", (1, 6)) for _ in range(rng.randint(1, 6))),
    ),
    Family(
        "run_length",
        "Read a string of lowercase letters. Print its run-length encoding: each run as the letter followed by "
        "its length (aaab becomes a3b1).",
        "s = input().strip()\nout, i = [], 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n"
        "        j += 1\n    out.append(s[i] + str(j - i))\n    i = j\nprint(''.join(out))",
        lambda s, p: run_length(s.strip()),
        lambda rng: word(rng, "abc", (1, 14)),
    ),
    Family(
        "gcd_lcm",
        "Read two positive integers a and b on one line. Print gcd(a, b) and lcm(a, b) separated by a space.",
        "import math\na, b = map(int, input().split())\ng = math.gcd(a, b)\nprint(g, a * b // g)",
        lambda s, p: (lambda a, b: f"{math.gcd(a, b)} {a * b // math.gcd(a, b)}")(*ints(s)),
        lambda rng: f"{rng.randint(1, 200)} {rng.randint(1, 200)}",
    ),
    Family(
        "fizzbuzz",
        "Read n. For i from 1 to n print one line: FizzBuzz if i is divisible by {a} and {b}, Fizz if only by {a}, "
        "Buzz if only by {b}, otherwise i.",
        "n = int(input())\nfor i in range(1, n + 1):\n    if i % {a} == 0 and i % {b} == 0:\n"
        "        print('FizzBuzz')\n    elif i % {a} == 0:\n        print('Fizz')\n"
        "    elif i % {b} == 0:\n        print('Buzz')\n"
        "    else:\n        print(i)",
        lambda s, p: fizz(int(s), p["a"], p["b"]),
        lambda rng: str(rng.randint(1, 30)),
        lambda rng: dict(zip(("a", "b"), rng.sample(range(2, 8), 2), strict=True)),
    ),
    Family(
        "collatz_steps",
        "Read a positive integer n. Print how many steps the Collatz rule (n/2 if even, 3n+1 if odd) takes to reach 1.",
        "n = int(input())\nsteps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\n"
        "print(steps)",
        lambda s, p: str(collatz(int(s))),
        lambda rng: str(rng.randint(1, 500)),
    ),
    Family(
        "max_subarray",
        "Read integers from one line. Print the largest sum of a non-empty contiguous run of them.",
        "xs = [int(x) for x in input().split()]\nbest = cur = xs[0]\nfor x in xs[1:]:\n    cur = max(x, cur + x)\n"
        "    best = max(best, cur)\nprint(best)",
        lambda s, p: str(max_subarray(ints(s))),
        lambda rng: ints_line(rng, -20, 20),
    ),
    Family(
        "balanced_parens",
        "Read a string of ( and ) characters. Print YES if it is balanced, otherwise NO.",
        "s = input().strip()\ndepth = 0\nfor c in s:\n    depth += 1 if c == '(' else -1\n    if depth < 0:\n"
        "        break\nprint('YES' if depth == 0 else 'NO')",
        lambda s, p: "YES" if balanced(s.strip()) else "NO",
        lambda rng: balanced_word(rng) if rng.random() < 0.5 else word(rng, "()", (2, 12)),
    ),
]


def collatz(n: int) -> int:
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


@dataclass(frozen=True)
class Problem:
    family: str
    statement: str  # ends with one worked example (an input that is not among the hidden tests)
    solution: str
    tests: list[tuple[str, str]]  # (stdin, expected stdout)


def generate(rng: random.Random, n_tests: int) -> Problem:
    """A problem of a random family with `n_tests` hidden tests whose expected outputs are not all the same
    (one constant printed cannot pass them), plus a worked example that is not among them."""
    while True:
        family = rng.choice(FAMILIES)
        params = family.params(rng)
        inputs: list[str] = []
        for _ in range(50 * n_tests):  # distinct inputs where the family has enough of them
            text = family.make_input(rng)
            if text not in inputs:
                inputs.append(text)
            if len(inputs) == n_tests + 1:
                break
        example, tests = inputs[0], [(text, family.solve(text, params)) for text in inputs[1:] or inputs]
        if len({out for _, out in tests}) >= min(2, n_tests):
            break
    shown = f"{family.statement.format(**params)}\nExample input:\n{example}\nExample output:\n"
    shown += family.solve(example, params)
    return Problem(family.name, shown, family.solution.format(**params), tests)
