"""Deduction (DED): given a problem statement, write the program; hidden stdin/stdout tests decide.

Score 1 iff every test passes; the fraction passed is in the details. Rows of a `path` file need `statement`
and `tests` (a list of {input, output}); `solution` is optional and serves as the reference.
"""

import random
from typing import Any

from pydantic import Field

from trainguard.tasks import problems
from trainguard.tasks.answers import last_python_block, normalise_whitespace
from trainguard.tasks.base import TASKS, Instance, Score
from trainguard.tasks.execution import ProgramTask, ProgramTaskConfig

PROMPT = (
    "{statement}\nRead standard input and write standard output. "
    "Answer with a complete Python program in a ```python block.\n"
)
# Small edits that turn a right program into a plausible wrong one, for rejected answers of preference pairs.
MUTATIONS = [(" + 1", " + 2"), ("- 1", "- 2"), ("reverse=True", "reverse=False"), ("[::-1]", ""), ("==", "!=")]
MUTATIONS += [("< 0", "<= 0"), ("max(", "min("), ("% 2 == 0", "% 2 == 1"), ("'YES'", "'NO'"), ("print(", "print(1 + ")]


class DeductionConfig(ProgramTaskConfig):
    tests: int = Field(5, ge=1, le=50, description="Hidden tests per generated problem.")


@TASKS.register("ded")
class DeductionTask(ProgramTask):
    """Write a program from a statement; rows of a `path` file need statement and tests."""

    name = "ded"
    Config = DeductionConfig
    config: DeductionConfig
    required = ("statement", "tests")

    def check_row(self, row: Any) -> str | None:
        reason = super().check_row(row)
        if reason is None and not (isinstance(row["tests"], list) and row["tests"]):
            return "'tests' not a non-empty list"
        if reason is None and not all(isinstance(t, dict) and {"input", "output"} <= t.keys() for t in row["tests"]):
            return "a test lacks 'input' or 'output'"
        return reason

    def instance(self, id: int) -> Instance:
        if self.config.path:
            row = self.row(id)
            statement, solution, family = str(row["statement"]), row.get("solution"), "file"
            tests = [(str(t["input"]), str(t["output"])) for t in row["tests"]]
        else:
            made = problems.generate(self.rng(id), self.config.tests)
            statement, solution, tests, family = made.statement, made.solution, made.tests, made.family
        reference = f"```python\n{solution.rstrip()}\n```" if solution else ""
        meta = {"tests": [list(t) for t in tests], "family": family}
        return Instance(id=id, prompt=PROMPT.format(statement=statement), reference=reference, meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        program = last_python_block(response)
        if program is None:
            return Score(0.0, {"error": "no ```python block", "passed": 0.0})
        tests = instance.meta["tests"]
        results = self.execute([(program, stdin if stdin.endswith("\n") else stdin + "\n") for stdin, _ in tests])
        passed = [
            r.ok and normalise_whitespace(r.stdout) == normalise_whitespace(expected)
            for r, (_, expected) in zip(results, tests, strict=True)
        ]
        statuses = sorted({r.status for r in results})
        return Score(
            float(all(passed)), {"passed": sum(passed) / len(passed), "tests": len(passed), "status": statuses}
        )

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        """Programs that read nothing into the problem: the example's output copied from the statement, common
        constants, an echo and an empty program."""
        example = instance.prompt.split("Example output:\n", 1)[-1].split("\nRead standard input", 1)[0]
        programs = {
            "example output": f"print({example!r})",
            "echo": "import sys\nprint(sys.stdin.read(), end='')",
            "empty": "pass",
        }
        programs |= {f"print {c}": f"print({c!r})" for c in ("0", "1", "YES", "NO")}
        return {name: f"```python\n{source}\n```" for name, source in programs.items()}

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The reference with one small edit applied (checked wrong by the caller); an empty program if none fits."""
        program = last_python_block(instance.reference) or ""
        # Edits inside a `while` loop tend to make it endless, and every endless test costs a full timeout.
        edits = [(a, b) for a, b in (MUTATIONS[-1:] if "while" in program else MUTATIONS) if a in program]
        if not edits:
            return "```python\nprint()\n```"
        a, b = rng.choice(edits)
        return f"```python\n{program.replace(a, b, 1).rstrip()}\n```"
