"""Constrained training: Lagrange multipliers (ga, safe_rlhf, pid controllers) and target schedules."""

from trainguard.constraints.controllers import (
    CONTROLLERS,
    PID,
    Controller,
    ControllerConfig,
    GradientAscent,
    GradientAscentConfig,
    PIDConfig,
    SafeRLHF,
    SafeRLHFConfig,
)
from trainguard.constraints.dual import ConstraintSpec, ConstraintTracker, DualConfig, DualOptimizer
from trainguard.constraints.schedules import PhaseTightening, PhaseTighteningConfig, TargetSchedule

__all__ = [
    "CONTROLLERS",
    "PID",
    "ConstraintSpec",
    "ConstraintTracker",
    "Controller",
    "ControllerConfig",
    "DualConfig",
    "DualOptimizer",
    "GradientAscent",
    "GradientAscentConfig",
    "PIDConfig",
    "PhaseTightening",
    "PhaseTighteningConfig",
    "SafeRLHF",
    "SafeRLHFConfig",
    "TargetSchedule",
]
