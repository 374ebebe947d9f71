"""What the engine is built from, in two groups: the pieces of one stage and the services of the run."""

from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.config import StageSection
from trainguard.data.sources import Source
from trainguard.engine.checkpoint import Checkpointer
from trainguard.engine.outcome import Hooks
from trainguard.engine.state import Knobs, TrainState, WorldMemory
from trainguard.guard.faults import FaultInjector
from trainguard.guard.guard import Guard
from trainguard.objectives import Objective, StepPlugin


@dataclass
class StagePieces:
    """What one stage trains, built by the pipeline (or a test) per stage."""

    stage: StageSection
    index: int
    total_steps: int
    model: nn.Module  # prepared by accelerate
    objective: Objective
    source: Source
    optimizer: torch.optim.Optimizer
    heads: dict[str, nn.Module] = field(default_factory=dict)  # the objective's trainables, prepared
    plugins: list[StepPlugin] = field(default_factory=list)
    guard: Guard | None = None
    generation: Any = None
    watch: Any = None  # engine/watch.py StageWatch: the promotion gate and probes


@dataclass
class RunServices:
    """What lives across the run's stages."""

    accelerator: Accelerator
    state: TrainState
    sinks: Any
    checkpointer: Checkpointer
    hooks: Hooks
    knobs: Knobs = field(default_factory=Knobs)
    world: WorldMemory = field(default_factory=WorldMemory)
    faults: FaultInjector | None = None
    checkpoint_meta: dict[str, Any] = field(default_factory=dict)
    peak_flops: float | None = None  # FLOP/s of one device at the training dtype (engine/flops.py); None: no MFU
