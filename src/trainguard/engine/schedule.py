"""Learning-rate schedules as pure functions of the step, so the scheduler's only state is the step."""

import math
from typing import Literal

from pydantic import Field

from trainguard.section import Section


class ScheduleSection(Section):
    name: Literal["cosine", "constant"] = Field("cosine", description="LR schedule after warm-up.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps (seed default 100).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a share of the peak (seed default 0.1).")


def lr_at(step: int, peak: float, total: int, warmup: int, min_ratio: float, name: str = "cosine") -> float:
    """LR for optimizer step `step` (0-based): linear warm-up from peak/warmup to peak, then cosine (or
    constant) decay to peak*min_ratio at step total-1."""
    if warmup > 0 and step < warmup:
        return peak * (step + 1) / warmup
    if name == "constant":
        return peak
    span = max(total - 1 - warmup, 1)
    progress = min(max(step - warmup, 0) / span, 1.0)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
