"""`tool_use`: a formula over hidden values becomes a short program of tool calls whose results feed later calls.

The prompt names the lookup keys and the files but not their values, so no answer is right without the calls.
`[k]` is `lookup("k")`, `<f>` is the number in file f (`read`), and the two nest: `[<f>]` looks up the key that
f holds, `<[k]>` reads the file that k names. The verifier runs the answer (tasks/tool_calls.py) in the sandbox,
where the tree exists, and compares its final value with the generator's; any program that gets there passes.
"""

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator

from trainguard.sandbox import ExecResult, SandboxPool, shared_pool
from trainguard.tasks import tool_calls
from trainguard.tasks.answers import strip_thinking
from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig, known_kinds

SOURCE = Path(tool_calls.__file__).read_text() + "\nmain()\n"
FENCE = re.compile(r"```[\w-]*[ \t]*\n(.*?)```", re.DOTALL)
PROMPT = "tools: [k]=lookup(k) <f>=read(f) calc(e)\nkeys: {keys}\nfiles: {files}\nfind: {formula}\n"
KEYS = ("apple", "bean", "corn", "date", "fig", "kiwi", "lime", "nut", "oat", "pear", "plum", "rye", "yam")
# Formulas over the call results a, b, c and a constant n; the prompt shows them with the calls in place.
FORMULAS = {
    1: ("{a}*{n}", "{a}+{n}", "{a}*{n}-{m}", "{a}-{n}"),
    2: ("{a}*{b}+{n}", "{a}+{b}*{n}", "{a}*{n}-{b}", "({a}+{b})*{n}", "{a}*{b}-{n}"),
    3: ("({a}+{b})*{n}-{c}", "{a}*{b}-{c}", "{a}+{b}+{c}*{n}"),
}


@dataclass(frozen=True)
class Source:
    """One value the formula needs: how the prompt writes it, and the calls that fetch it."""

    shown: str  # `[fig]`, `<ab.txt>`, `[<ab.txt>]`, `<[fig]>`
    calls: list[tuple[str, str]]  # (tool, argument); a later call's argument is the previous call's result


class ToolUseConfig(TaskConfig):
    keys: tuple[int, int] = Field(
        (3, 4), description="[low, high] keys in the lookup table, at least 2 (unused ones distract)."
    )
    files: tuple[int, int] = Field(
        (2, 3), description="[low, high] files in the tree, at least 2 (unused ones distract)."
    )
    values: tuple[int, int] = Field(
        (2, 99), description="[low, high] of the hidden numbers (table values and file contents)."
    )
    kinds: list[str] | None = Field(None, description="Instance kinds to draw from (see KINDS); default: all.")
    timeout: float = Field(2.0, gt=0, le=30, description="Wall-clock seconds an answer may run in the sandbox.")

    @field_validator("keys", "files", "values")
    @classmethod
    def _ordered(cls, value: tuple[int, int], info: ValidationInfo) -> tuple[int, int]:
        least = 1 if info.field_name == "values" else 2  # a formula uses up to two keys, or two files
        most = {"keys": len(KEYS), "files": 20}.get(str(info.field_name), 10**6)
        if not least <= value[0] <= value[1] <= most:
            raise ValueError(f"need {least} <= low <= high <= {most}, got {list(value)}")
        return value

    @field_validator("kinds")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return known_kinds(value, KINDS)


# Each kind: the sources its formula combines ("k" a key, "f" a file, "kf" a key read from a file, "fk" a file
# named by a key) and how many.
KINDS: dict[str, tuple[str, ...]] = {
    "lookups": ("k", "k"),
    "reads": ("f", "f"),
    "mixed": ("k", "f"),
    "key_in_file": ("kf",),
    "file_in_key": ("fk",),
    "chain": ("k", "f", "k"),
}


def file_name(rng: random.Random, taken: set[str]) -> str:
    while (name := rng.choice("bdgkmnprst") + rng.choice("aeiou") + rng.choice("klmnrt") + ".txt") in taken:
        pass
    taken.add(name)
    return name


@dataclass
class World:
    """The hidden part of an instance: the lookup table and the tree, filled as sources are drawn."""

    table: dict[str, int | str]
    tree: dict[str, str]

    def source(self, rng: random.Random, shape: str, used: set[str]) -> Source:
        """A source of `shape` over a key and/or a file that this formula has not used yet."""
        key = rng.choice(sorted(k for k in self.table if k not in used)) if "k" in shape else ""
        file = rng.choice(sorted(f for f in self.tree if f not in used)) if "f" in shape else ""
        used |= {key, file}
        if shape == "k":
            return Source(f"[{key}]", [("lookup", key)])
        if shape == "f":
            return Source(f"<{file}>", [("read", file)])
        if shape == "kf":
            self.tree[file] = key + "\n"
            return Source(f"[<{file}>]", [("read", file), ("lookup", "")])
        self.table[key] = file
        return Source(f"<[{key}]>", [("lookup", key), ("read", "")])

    def value(self, source: Source) -> int:
        result: int | str = ""
        for tool, argument in source.calls:
            result = self.table[argument or str(result)] if tool == "lookup" else self.tree[argument or str(result)]
            result = tool_calls.number_or_text(result) if isinstance(result, str) else result
        return int(result)


def make_instance(rng: random.Random, cfg: ToolUseConfig, kind: str) -> dict[str, Any]:
    """Table, tree, formula, reference program and answer of one instance."""
    keys = sorted(rng.sample(KEYS, rng.randint(*cfg.keys)))
    taken: set[str] = set()
    files = sorted(file_name(rng, taken) for _ in range(rng.randint(*cfg.files)))
    world = World({k: rng.randint(*cfg.values) for k in keys}, {f: f"{rng.randint(*cfg.values)}\n" for f in files})
    used: set[str] = set()
    sources = [world.source(rng, shape, used) for shape in KINDS[kind]]
    template = rng.choice(FORMULAS[len(sources)])
    n, m = rng.randint(2, 9), rng.randint(1, 9)
    shown = template.format(**{v: s.shown for v, s in zip("abc", sources, strict=False)}, n=n, m=m)
    lines = []
    for variable, source in zip("abc", sources, strict=False):
        (tool, argument), *then = source.calls
        if then:  # the first call's result is the second call's argument
            lines += [f'{variable}k = {tool}("{argument}")', f"{variable} = {then[0][0]}({variable}k)"]
        else:
            lines.append(f'{variable} = {tool}("{argument}")')
    expression = template.format(**{v: v for v in "abc"}, n=n, m=m)
    lines += [f'r = calc("{expression}")', "answer r"]
    answer = tool_calls.calc(expression, {v: world.value(s) for v, s in zip("abc", sources, strict=False)})
    return {"table": world.table, "tree": world.tree, "formula": shown, "program": "\n".join(lines), "answer": answer}


def program_of(response: str) -> str:
    """The answer's program: the last fenced block if there is one, else the whole response (thinking removed)."""
    text = strip_thinking(response)
    blocks = FENCE.findall(text)
    return blocks[-1] if blocks else text


def parse_error(program: str) -> str | None:
    try:
        tool_calls.parse(program)
    except tool_calls.ParseError as err:
        return str(err)
    return None


@TASKS.register("tool_use")
class ToolUseTask(Task):
    """A formula over hidden lookups and file contents → a program of calc/lookup/read calls; scored by running
    it in the sandbox and comparing its answer with the formula's value."""

    name = "tool_use"
    Config = ToolUseConfig
    config: ToolUseConfig

    def __init__(self, config: ToolUseConfig) -> None:
        super().__init__(config)
        self.pool: SandboxPool | None = None  # None: the process-wide shared pool

    def instance(self, id: int) -> Instance:
        rng = self.rng(id)
        kind = rng.choice(self.config.kinds or list(KINDS))
        while True:  # answers that 0, 1, a number of the prompt or one hidden value alone would give: drawn again
            made = make_instance(rng, self.config, kind)
            hidden = [tool_calls.number_or_text(str(v)) for v in [*made["table"].values(), *made["tree"].values()]]
            if made["answer"] not in (0, 1, *map(int, re.findall(r"\d+", made["formula"])), *hidden):
                break
        prompt = PROMPT.format(keys=" ".join(sorted(made["table"])), files=" ".join(made["tree"]), **made)
        meta = {"family": kind, "table": made["table"], "tree": made["tree"], "answer": made["answer"]}
        return Instance(id=id, prompt=prompt, reference=made["program"], meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        return self.score_many([instance], [response])[0]

    def score_many(self, instances: Sequence[Instance], responses: Sequence[str]) -> list[Score]:
        """Parse every answer here, then run the parsed ones in the sandbox in one batch."""
        programs = [program_of(response) for response in responses]
        errors = [parse_error(program) for program in programs]
        jobs = [(inst, program) for inst, program, error in zip(instances, programs, errors, strict=True) if not error]
        results = iter(self.execute([self.job(inst, program) for inst, program in jobs]))
        scores = []
        for inst, error in zip(instances, errors, strict=True):
            if error:  # nothing of it runs
                details = {"parsed": False, "steps": 0, "calls_ok": False, "answer": None, "error": error}
                scores.append(Score(0.0, details | {"answer_ok": False}))
                continue
            details = outcome(next(results))
            right = details["calls_ok"] and details["answer"] == inst.meta["answer"]
            scores.append(Score(float(right), details | {"answer_ok": right}))
        return scores

    def job(self, instance: Instance, program: str) -> str:
        return json.dumps({"tree": instance.meta["tree"], "table": instance.meta["table"], "answer": program})

    def execute(self, stdins: list[str]) -> list[ExecResult]:
        if not stdins:
            return []
        pool = self.pool or shared_pool()
        return pool.map([(SOURCE, stdin) for stdin in stdins], timeout=self.config.timeout, output_kb=64)

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        """Programs that read nothing into the formula: a constant (0, or the formula's first number), or the
        first key's or first file's value alone."""
        lines = instance.prompt.splitlines()
        first_key, first_file = lines[1].split()[1], lines[2].split()[1]
        constant = (re.findall(r"\d+", lines[3]) or ["0"])[0]
        return {
            "zero": 'a = calc("0")\nanswer a',
            "prompt constant": f'a = calc("{constant}")\nanswer a',
            "first key": f'a = lookup("{first_key}")\nanswer a',
            "first file": f'a = read("{first_file}")\nanswer a',
            "echo": instance.prompt,
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The reference with the formula's constant moved by one or two, or its first operator changed when it has
        no constant (checked by the caller)."""
        *calls, calc_line, answer = instance.reference.splitlines()
        numbers = list(re.finditer(r"\d+", calc_line))
        if numbers:
            hit = rng.choice(numbers)
            moved = calc_line[: hit.start()] + str(int(hit.group()) + rng.choice((1, 2))) + calc_line[hit.end() :]
        else:
            op = re.search(r"[-+*]", calc_line)
            assert op is not None, "every formula combines its values"
            moved = calc_line[: op.start()] + {"-": "+", "+": "-", "*": "+"}[op.group()] + calc_line[op.end() :]
        return "\n".join([*calls, moved, answer])


def outcome(result: ExecResult) -> dict[str, Any]:
    """The interpreter's report from the sandbox, or a failed run's status."""
    if result.ok:
        try:
            report = json.loads(result.stdout)
            if isinstance(report, dict) and {"parsed", "steps", "calls_ok", "answer"} <= report.keys():
                return report | {"status": "ok"}
        except json.JSONDecodeError:
            pass
    error = f"the verifier did not report ({result.status}): {result.stderr[-200:]}"
    return {"parsed": True, "steps": 0, "calls_ok": False, "answer": None, "error": error, "status": result.status}
