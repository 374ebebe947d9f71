"""The task interface: an instance from an integer id, a prompt, a checkable score, a reference answer."""

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from trainguard.registry import Registry
from trainguard.section import Section


class TaskConfig(Section):
    """Parameters of a task family; each task declares its own subclass beside it."""


@dataclass(frozen=True)
class Instance:
    id: int
    prompt: str
    reference: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    value: float  # in [0, 1]
    details: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """Deterministic task family: the same id gives the same instance on any machine."""

    name: ClassVar[str]
    Config: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, config: TaskConfig) -> None:
        self.config = config

    def rng(self, id: int) -> random.Random:
        # str seeds are hashed with SHA-512 by `random`, so this is stable across machines and runs.
        return random.Random(f"{self.name}:{id}")

    @abstractmethod
    def instance(self, id: int) -> Instance: ...

    @abstractmethod
    def score(self, instance: Instance, response: str) -> Score: ...

    def score_many(self, instances: Sequence[Instance], responses: Sequence[str]) -> list[Score]:
        """Score many answers in one call: a task that runs programs overrides it to send them through the
        sandbox as one batch; everything that scores a set of answers calls this."""
        return [self.score(inst, response) for inst, response in zip(instances, responses, strict=True)]

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """A plausible answer that should score 0, for the rejected side of preference pairs (caller verifies)."""
        raise NotImplementedError(f"task '{self.name}' cannot make wrong answers")

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        """Answers that need no thought, by name; their pass rates must stay low for the task to mean anything."""
        return {}

    def record(self, id: int) -> dict[str, Any]:
        """An SFT record whose completion is the reference answer."""
        inst = self.instance(id)
        return {"id": f"{self.name}-{id}", "task": self.name, "prompt": inst.prompt, "completion": inst.reference}


def known_kinds(value: list[str] | None, kinds: Iterable[str]) -> list[str] | None:
    """A task config's `kinds` (None: all), each one of `kinds`: the validator the kind-drawing tasks share."""
    unknown = sorted(set(value or ()) - set(kinds))
    if unknown or value == []:
        raise ValueError(f"unknown kinds {unknown}; allowed: {', '.join(kinds)}")
    return value


def ordered_range(value: tuple[int, int]) -> tuple[int, int]:
    """A task config's [low, high] count range: the validator the tasks that draw sizes share."""
    if not 1 <= value[0] <= value[1]:
        raise ValueError(f"need 1 <= low <= high, got {list(value)}")
    return value


def verified_wrong(task: Task, instance: Instance, make: Callable[[], str], fallback: str) -> str:
    """The first of a few near misses from `make` that the task scores 0, else `fallback` (always wrong)."""
    for _ in range(8):
        answer = make()
        if task.score(instance, answer).value == 0:
            return answer
    return fallback


TASKS: Registry[type[Task]] = Registry("task")


def build_task(name: str, params: dict[str, Any] | None = None) -> Task:
    cls = TASKS.get(name)
    return cls(cls.Config.model_validate(params or {}))
