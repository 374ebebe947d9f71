"""Abduction (ABD): given a program and the output it printed, give an input that makes it print that output.

Any input that works is right: the answer is run through the program in the sandbox and its output compared
with whitespace normalised.
"""

import random
import re

from trainguard.tasks import programs
from trainguard.tasks.answers import last_tagged, normalise_whitespace
from trainguard.tasks.base import TASKS, Instance, Score
from trainguard.tasks.execution import ProgramTask, ProgramTaskConfig

PROMPT = (
    "Find an input for which this Python program prints the output below.\n"
    "```python\n{program}```\nOutput:\n{output}\n"
    "Give the input inside <INPUT></INPUT>.\n"
)


@TASKS.register("abd")
class AbductionTask(ProgramTask):
    """Find the program's input from its output; rows of a `path` file need program, input and output."""

    name = "abd"
    Config = ProgramTaskConfig
    required = ("program", "input", "output")

    def instance(self, id: int) -> Instance:
        if self.config.path:
            row = self.row(id)
            program, given, output, level = str(row["program"]), str(row["input"]), str(row["output"]), None
        else:
            made = programs.generate(self.rng(id), self.difficulty(id))
            program, given, output, level = made.source, made.input, made.output, made.difficulty
        if not program.endswith("\n"):
            program += "\n"
        prompt = PROMPT.format(program=program, output=output.rstrip("\n"))
        meta = {"program": program, "output": output, "difficulty": level}
        return Instance(id=id, prompt=prompt, reference=f"<INPUT>\n{given}\n</INPUT>", meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        answer = last_tagged(response, "INPUT")
        if answer is None:
            return Score(0.0, {"error": "no <INPUT> block"})
        (result,) = self.execute([(instance.meta["program"], answer + "\n")])
        if not result.ok:
            return Score(0.0, {"status": result.status, "stderr": result.stderr[-300:]})
        right = normalise_whitespace(result.stdout) == normalise_whitespace(instance.meta["output"])
        return Score(float(right), {"status": "ok", "got": result.stdout[:200]})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        """Inputs that read nothing into the program: none, the wanted output itself, and small constants."""
        answers = {"empty input": "", "output as input": instance.meta["output"].rstrip("\n"), "0": "0", "1": "1"}
        return {name: f"<INPUT>\n{text}\n</INPUT>" for name, text in answers.items()}

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The reference input, nudged: a number moved by one or a letter changed (checked wrong by the caller)."""
        given = last_tagged(instance.reference, "INPUT") or ""
        numbers = list(re.finditer(r"-?\d+", given))
        if numbers:
            hit = rng.choice(numbers)
            nudged = str(int(hit.group()) + rng.choice((-2, -1, 1, 2)))
            text = given[: hit.start()] + nudged + given[hit.end() :]
        elif given:
            i = rng.randrange(len(given))
            text = given[:i] + rng.choice([c for c in "abcdefghz" if c != given[i]]) + given[i + 1 :]
        else:
            text = "x"
        return f"<INPUT>\n{text}\n</INPUT>"
