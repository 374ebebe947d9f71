"""Objectives: (model, batch) -> loss terms; importing this package registers them all."""

from trainguard.constraints import plugin as _constraints  # noqa: F401  (registers the "constraints" plug-in)
from trainguard.models import spiking as _spiking  # noqa: F401  (registers bdh's "spiking" plug-in)
from trainguard.objectives import cost, grpo, ppo, reward, sft  # noqa: F401  (registers each objective)
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
