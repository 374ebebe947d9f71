"""The objective interface the engine calls once per micro-batch."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from trainguard.registry import Registry
from trainguard.section import Section


class ObjectiveConfig(Section):
    """Base of each objective's config; `name` picks the objective from the registry."""

    name: str


@dataclass
class LossOutput:
    """`loss_sum` is summed over the micro-batch's `weight` units (tokens, pairs, ...): the engine divides
    by the units of the whole accumulation window, so accumulating k micro-batches equals one big batch."""

    loss_sum: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class Objective(ABC):
    Config: ClassVar[type[ObjectiveConfig]]

    def __init__(self, config: ObjectiveConfig) -> None:
        self.config = config

    @abstractmethod
    def weight(self, batch: Any) -> int:
        """How many loss units (e.g. target tokens) the micro-batch holds; known before the forward."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> LossOutput: ...

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Modules the objective owns and trains besides the model (a value head, a reward head)."""
        return {}


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
