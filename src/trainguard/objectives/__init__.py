"""Objectives: (model, batch) -> loss; importing this package registers them all."""

from trainguard.objectives import sft  # noqa: F401  (registers "sft")
from trainguard.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveConfig

__all__ = ["OBJECTIVES", "LossOutput", "Objective", "ObjectiveConfig"]
