"""String tasks for the CPU quickstart: reverse or sort a short word; exact match is the score."""

import random
import string

from pydantic import Field, model_validator

from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig


class WordConfig(TaskConfig):
    min_len: int = Field(3, ge=1, description="Shortest word, in characters.")
    max_len: int = Field(8, ge=1, le=64, description="Longest word, in characters.")
    alphabet: str = Field(string.ascii_lowercase, min_length=2, description="Characters words are drawn from.")

    @model_validator(mode="after")
    def _ordered(self) -> "WordConfig":
        if self.min_len > self.max_len:
            raise ValueError(f"min_len ({self.min_len}) must not exceed max_len ({self.max_len})")
        return self


class WordTask(Task):
    Config = WordConfig
    config: WordConfig
    verb: str

    def word(self, id: int) -> str:
        rng = self.rng(id)
        n = rng.randint(self.config.min_len, self.config.max_len)
        return "".join(rng.choice(self.config.alphabet) for _ in range(n))

    def answer(self, word: str) -> str:
        raise NotImplementedError

    def instance(self, id: int) -> Instance:
        word = self.word(id)
        return Instance(id=id, prompt=f"{self.verb}: {word}\n", reference=self.answer(word))

    def score(self, instance: Instance, response: str) -> Score:
        got = response.strip()
        return Score(float(got == instance.reference), {"expected": instance.reference, "got": got})

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """A near miss: two characters swapped, one replaced, one dropped or doubled, or the word itself
        unchanged (the caller keeps only answers the verifier scores 0)."""
        answer = list(instance.reference)
        i = rng.randrange(len(answer))
        kind = rng.choice(["swap", "replace", "drop", "double", "echo"])
        if kind == "swap" and len(answer) > 1:
            j = (i + 1) % len(answer)
            answer[i], answer[j] = answer[j], answer[i]
        elif kind == "replace":
            answer[i] = rng.choice([c for c in self.config.alphabet if c != answer[i]])
        elif kind == "drop" and len(answer) > 1:
            del answer[i]
        elif kind == "echo":
            return instance.prompt.split(": ", 1)[1].strip()
        else:
            answer.insert(i, answer[i])
        return "".join(answer)


@TASKS.register("reverse")
class ReverseTask(WordTask):
    """Write the word backwards."""

    name = "reverse"
    verb = "reverse"

    def answer(self, word: str) -> str:
        return word[::-1]


@TASKS.register("sort")
class SortTask(WordTask):
    """Write the word's characters in alphabetical order."""

    name = "sort"
    verb = "sort"

    def answer(self, word: str) -> str:
        return "".join(sorted(word))
