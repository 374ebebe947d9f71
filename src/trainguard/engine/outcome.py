"""What the engine reports outward, and what it returns: kept apart so the pipeline and tests import them
without the loop."""

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from trainguard.errors import TrainguardError
from trainguard.guard.alerts import Alert


class GuardStop(TrainguardError):
    """A policy stopped the run; the CLI exits with status 3."""

    exit_code = 3


@dataclass
class StageResult:
    name: str
    steps: int
    seconds: float = 0.0
    last: dict[str, float] = field(default_factory=dict)  # last value of each metric
    actions: dict[str, int] = field(default_factory=dict)


@dataclass
class Hooks:
    """What the engine reports outward; the pipeline wires these to the run folder and the console."""

    event: Callable[..., None]
    alert: Callable[[Alert], None]
    forget_after: Callable[[int], int]  # drop metric rows after a step (rollback); returns rows dropped
    on_best: Callable[[], None] | None = None
    decode: Callable[[torch.Tensor], list[str]] | None = None  # batch ids -> texts, for data checks
