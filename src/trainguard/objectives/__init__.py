"""Objectives: (model, batch) -> loss terms; importing this package registers them all."""

from trainguard.objectives import sft  # noqa: F401  (registers "sft")
from trainguard.objectives.base import (
    OBJECTIVES,
    LossOutput,
    Objective,
    ObjectiveConfig,
    ObjectiveContext,
    StepPlugin,
)

__all__ = ["OBJECTIVES", "LossOutput", "Objective", "ObjectiveConfig", "ObjectiveContext", "StepPlugin"]
