"""`chain_of_thought`: multi-step arithmetic word problems and ordering (transitivity) puzzles, answered with worked
reasoning, one short line per step, and a final `Answer: <x>` line; only that line is scored. Answers are spread so
that no thoughtless answer passes 1%: arithmetic answers are drawn uniformly from a wide range and worked backwards,
and ordering puzzles ask for the whole order of five people rather than yes/no or one name."""

import functools
import itertools
import math
import random
import re
from collections import Counter
from dataclasses import dataclass

from pydantic import Field, model_validator

from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig

PEOPLE = (
    ("Ann", "She"), ("Ben", "He"), ("Cleo", "She"), ("Dan", "He"), ("Eve", "She"), ("Finn", "He"), ("Gia", "She"),
    ("Hugo", "He"), ("Iris", "She"), ("Jack", "He"), ("Kim", "She"), ("Leo", "He"), ("Mia", "She"), ("Ned", "He"),
    ("Ola", "She"), ("Pete", "He"), ("Rosa", "She"), ("Sam", "He"), ("Tess", "She"), ("Vic", "He"), ("Zoe", "She"),
)  # fmt: skip
NAMES = frozenset(name for name, _ in PEOPLE)
ITEMS = ("apples", "pens", "cards", "coins", "eggs", "books", "shells", "stamps", "marbles", "cups", "kites", "nuts")
# (comparative, its opposite, superlative, the opposite's superlative); reasoning lines write `A>B` for "A is
# <comparative> than B".
RELATIONS = (
    ("taller", "shorter", "tallest", "shortest"),
    ("older", "younger", "oldest", "youngest"),
    ("faster", "slower", "fastest", "slowest"),
    ("heavier", "lighter", "heaviest", "lightest"),
)
ANSWER_LINE = re.compile(r"^\s*Answer:\s*(.*?)\s*$", re.MULTILINE)
MODE_SAMPLE = 1000  # the `most common answer` baseline is the mode over ids 0..MODE_SAMPLE-1


@dataclass(frozen=True)
class Problem:
    question: str
    lines: list[str]  # the worked reasoning, one step a line
    answer: str
    family: str  # arithmetic | logic_order | logic_extreme | logic_yes_no

    def reference(self) -> str:
        return "\n".join([*self.lines, f"Answer: {self.answer}"])


def spread_stride(span: int) -> int:
    """A step near span/φ and coprime with span: `id * step % span` takes every value once in any span consecutive
    ids, and neighbouring ids land far apart."""
    step = max(1, round(span * 0.618))
    while math.gcd(step, span) != 1:
        step += 1
    return step


def arithmetic(rng: random.Random, steps: int, answer: int, top: int, max_operand: int) -> Problem:
    """A person starts with some items and changes the count `steps` times (gets, gives away, doubles or triples,
    keeps half, buys bags of k) to end with `answer`; each change is one line `a<op>b=c` (a bag purchase two), every
    count stays in [2, top]. The changes are worked backwards from the answer. Redrawn while the answer is a number
    the question states or their sum, so copying fails."""
    while True:
        problem = arithmetic_once(rng, steps, answer, top, max_operand)
        numbers = [int(n) for n in re.findall(r"\d+", problem.question)]
        if int(problem.answer) not in numbers and int(problem.answer) != sum(numbers):
            return problem


def arithmetic_once(rng: random.Random, steps: int, answer: int, top: int, max_operand: int) -> Problem:
    (person, pronoun), item = rng.choice(PEOPLE), rng.choice(ITEMS)
    value = answer
    changes: list[tuple[str, list[str]]] = []  # (sentence, lines), last change first
    for _ in range(steps):
        ops = (["gets"] if value >= 3 else []) + (["gives"] if value < top else []) + (["buys"] if value >= 6 else [])
        ops += ["half"] if 2 * value <= top else []
        ops += [f"times{k}" for k in (2, 3) if value % k == 0 and value >= 2 * k]
        op = rng.choice(ops)
        if op == "gets":
            n = rng.randint(1, min(max_operand, value - 2))
            changes.append((f"{pronoun} gets {n} more.", [f"{value - n}+{n}={value}"]))
            value -= n
        elif op == "gives":
            n = rng.randint(1, min(max_operand, top - value))
            changes.append((f"{pronoun} gives {n} away.", [f"{value + n}-{n}={value}"]))
            value += n
        elif op == "half":
            changes.append((f"{pronoun} keeps half.", [f"{2 * value}/2={value}"]))
            value *= 2
        elif op.startswith("times"):
            k = int(op[-1])
            changes.append((f"{pronoun} {'doubles' if k == 2 else 'triples'} them.", [f"{value // k}*{k}={value}"]))
            value //= k
        else:
            bags = rng.randint(2, min(9, (value - 2) // 2))
            per = rng.randint(2, min(9, (value - 2) // bags))
            lines = [f"{bags}*{per}={bags * per}", f"{value - bags * per}+{bags * per}={value}"]
            changes.append((f"{pronoun} buys {bags} bags of {per}.", lines))
            value -= bags * per
    changes.reverse()
    sentences = [f"{person} has {value} {item}.", *(sentence for sentence, _ in changes), "How many now?"]
    return Problem(" ".join(sentences), [line for _, lines in changes for line in lines], str(answer), "arithmetic")


def first_appearance(text: str) -> list[str]:
    """The people a text names, in the order they first appear."""
    return list(dict.fromkeys(word for word in re.findall(r"[A-Z][a-z]+", text) if word in NAMES))


def ordering(rng: random.Random, people: int, kind: str) -> Problem:
    """`people` people in a hidden order, told as the adjacent comparisons in shuffled order and random direction.
    `kind` order asks for everyone from the first or the last (the facts are reshuffled while the order in which
    they name people, either way round, or the alphabet would give it away); extreme asks who is first or last;
    yes_no asks whether one pair (two or more apart, so transitivity is needed) is in a given order. The reasoning
    writes the needed chain as `A>B` lines, first to last."""
    more, less, most, least = rng.choice(RELATIONS)
    while True:
        order = [name for name, _ in rng.sample(PEOPLE, people)]  # order[0] is the most <more>
        facts = [
            f"{a} is {more} than {b}." if rng.random() < 0.5 else f"{b} is {less} than {a}."
            for a, b in itertools.pairwise(order)
        ]
        rng.shuffle(facts)
        given_away = (first_appearance(" ".join(facts)), sorted(order))
        if kind != "order" or not any(guess in (order, order[::-1]) for guess in given_away):
            break
    chain = [f"{a}>{b}" for a, b in itertools.pairwise(order)]
    if kind == "order":
        top = rng.random() < 0.5
        answer = ", ".join(order if top else order[::-1])
        return Problem(" ".join([*facts, f"List them {most if top else least} first."]), chain, answer, "logic_order")
    if kind == "extreme":
        top = rng.random() < 0.5
        question = f"Who is {most if top else least}?"
        return Problem(" ".join([*facts, question]), chain, order[0] if top else order[-1], "logic_extreme")
    i, j = sorted(rng.sample([(i, j) for i in range(people) for j in range(i + 2, people)], 1)[0])
    x, y = (order[i], order[j]) if rng.random() < 0.5 else (order[j], order[i])
    word = rng.choice((more, less))
    truth = (x == order[i]) == (word == more)
    lines = [*chain[i:j], f"{order[i]}>{order[j]}"]
    question = f"Is {x} {word} than {y}?"
    return Problem(" ".join([*facts, question]), lines, "yes" if truth else "no", "logic_yes_no")


def final_answer(response: str) -> str | None:
    """The text of the response's last `Answer:` line, or None when it has none."""
    found = ANSWER_LINE.findall(response)
    return found[-1] if found else None


def same_answer(got: str, want: str) -> bool:
    """Numbers by value (`07`, `7.0` and `7` agree); words and lists of names case-insensitively, whatever commas
    and spaces separate the names, a final period ignored."""
    got = got.strip().rstrip(".")
    try:
        return float(got) == float(want)
    except ValueError:
        return re.split(r"[,\s]+", got.lower()) == re.split(r"[,\s]+", want.lower())


class WordProblemConfig(TaskConfig):
    steps: tuple[int, int] = Field((2, 4), description="[low, high] changes in an arithmetic problem.")
    answers: tuple[int, int] = Field(
        (10, 999),
        description="[low, high] of an arithmetic answer; every count on the way stays in [2, high]. The answer "
        "steps through the range with the id (a stride coprime with its width), so in any high - low + 1 consecutive "
        "ids each value is the answer at most once and a constant passes at most 1/(high - low + 1) of them.",
    )
    max_operand: int = Field(99, ge=1, le=999, description="Largest number given or taken in one step.")
    people: tuple[int, int] = Field(
        (5, 5),
        description="[low, high] people in an ordering puzzle. Five leave 120 orders; with three, guessing one of "
        "the orders the facts do not give away passes about a quarter of the full-order puzzles.",
    )
    logic_share: float = Field(0.3, ge=0, le=1, description="Share of problems that are ordering puzzles.")
    extreme_share: float = Field(
        0,
        ge=0,
        le=1,
        description="Share of ordering puzzles asking who is first or last (the rest not yes/no ask for the whole "
        "order). A name from the prompt passes about 1/people of these: overall about logic_share × extreme_share "
        "/ people, so keep it 0 where the 1% baseline bound matters.",
    )
    yes_no_share: float = Field(
        0,
        ge=0,
        le=1,
        description="Share of ordering puzzles asked as yes/no. A constant `Answer: yes` passes half of these: "
        "overall about logic_share × yes_no_share / 2, so keep it 0 where the 1% baseline bound matters.",
    )

    @model_validator(mode="after")
    def _ranges(self) -> "WordProblemConfig":
        if not 1 <= self.steps[0] <= self.steps[1] <= 6:
            raise ValueError(f"steps must be [low, high] with 1 <= low <= high <= 6, got {list(self.steps)}")
        if not 10 <= self.answers[0] <= self.answers[1] <= 999:
            raise ValueError(f"answers must be [low, high] with 10 <= low <= high <= 999, got {list(self.answers)}")
        if not 3 <= self.people[0] <= self.people[1] <= 5:
            raise ValueError(f"people must be [low, high] with 3 <= low <= high <= 5, got {list(self.people)}")
        if self.extreme_share + self.yes_no_share > 1:
            raise ValueError(
                f"extreme_share + yes_no_share must be at most 1, got {self.extreme_share} + {self.yes_no_share}"
            )
        return self


@TASKS.register("chain_of_thought")
class WordProblemTask(Task):
    """Word problem → reasoning lines and `Answer: <x>`. Scores 1 when the last `Answer:` line equals the
    reference's answer (numbers by value, names in order); the reasoning is not checked. Details: `has_answer`,
    `answer_ok`, `steps` (non-empty lines before the last `Answer:` line)."""

    name = "chain_of_thought"
    Config = WordProblemConfig
    config: WordProblemConfig

    def problem(self, id: int) -> Problem:
        cfg, rng = self.config, self.rng(id)
        if rng.random() < cfg.logic_share:
            draw = rng.random()
            kind = "yes_no" if draw < cfg.yes_no_share else "order"
            kind = "extreme" if cfg.yes_no_share <= draw < cfg.yes_no_share + cfg.extreme_share else kind
            return ordering(rng, rng.randint(*cfg.people), kind)
        low, high = cfg.answers  # the answer cycles through the range with the id, so no value repeats sooner
        answer = low + id * spread_stride(high - low + 1) % (high - low + 1)  # than every high - low + 1 ids
        return arithmetic(rng, rng.randint(*cfg.steps), answer, high, cfg.max_operand)

    def instance(self, id: int) -> Instance:
        problem = self.problem(id)
        meta = {"family": problem.family, "answer": problem.answer}
        return Instance(id=id, prompt=f"{problem.question}\n", reference=problem.reference(), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        answer = final_answer(response)
        ok = answer is not None and same_answer(answer, instance.meta["answer"])
        lines = response.splitlines()
        last = max((k for k, line in enumerate(lines) if ANSWER_LINE.match(line)), default=len(lines))
        steps = sum(1 for line in lines[:last] if line.strip())
        return Score(float(ok), {"has_answer": int(answer is not None), "answer_ok": int(ok), "steps": steps})

    @functools.cached_property
    def most_common_answer(self) -> str:
        """The mode of the answers to ids 0..MODE_SAMPLE-1: the best constant a guesser who saw them could give."""
        return Counter(self.problem(id).answer for id in range(MODE_SAMPLE)).most_common(1)[0][0]

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        numbers = re.findall(r"\d+", instance.prompt)
        names = first_appearance(instance.prompt)
        return {
            "empty": "",
            "echo": instance.prompt,
            "answer 0": "Answer: 0",
            "answer 10": "Answer: 10",
            "answer 100": "Answer: 100",
            "answer yes": "Answer: yes",
            "answer no": "Answer: no",
            "most common answer": f"Answer: {self.most_common_answer}",
            "first number": f"Answer: {numbers[0] if numbers else 0}",
            "last number": f"Answer: {numbers[-1] if numbers else 0}",
            "sum of numbers": f"Answer: {sum(map(int, numbers))}",
            "first name": f"Answer: {names[0] if names else ''}",
            "last name": f"Answer: {names[-1] if names else ''}",
            "names as they appear": f"Answer: {', '.join(names)}",
            "names reversed": f"Answer: {', '.join(names[::-1])}",
            "names sorted": f"Answer: {', '.join(sorted(names))}",
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The reference's reasoning with a wrong final answer: a number off by 1–3, the other of yes/no, another
        person of the puzzle, or the order with two neighbours swapped."""
        *lines, _ = instance.reference.splitlines()
        answer = instance.meta["answer"]
        if answer.isdigit():
            wrong = str(int(answer) + rng.choice((-3, -2, -1, 1, 2, 3)) if int(answer) > 3 else int(answer) + 1)
        elif answer in ("yes", "no"):
            wrong = "no" if answer == "yes" else "yes"
        elif ", " in answer:
            names = answer.split(", ")
            k = rng.randrange(len(names) - 1)
            names[k], names[k + 1] = names[k + 1], names[k]
            wrong = ", ".join(names)
        else:
            others = {n for line in lines for n in line.split(">")} - {answer}
            wrong = rng.choice(sorted(others))
        return "\n".join([*lines, f"Answer: {wrong}"])
