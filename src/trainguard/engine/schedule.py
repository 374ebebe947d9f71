"""Learning-rate schedules as pure functions of the step, so the scheduler's only state is the step."""

import math


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
