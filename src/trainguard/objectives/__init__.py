"""Objectives: (model, batch) -> loss terms; importing this package registers them all."""

from trainguard.objectives import grpo, reward, sft  # noqa: F401  (registers "grpo", "reward" and "sft")
from trainguard.objectives.base import (
    OBJECTIVES,
    STEP_PLUGINS,
    LossOutput,
    Objective,
    ObjectiveConfig,
    ObjectiveContext,
    StepPlugin,
    StepPluginConfig,
)

__all__ = [
    "OBJECTIVES",
    "STEP_PLUGINS",
    "LossOutput",
    "Objective",
    "ObjectiveConfig",
    "ObjectiveContext",
    "StepPlugin",
    "StepPluginConfig",
]
