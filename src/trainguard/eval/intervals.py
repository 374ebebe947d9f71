"""Intervals for success rates: the Jeffreys interval, Beta(0.5 + s, 0.5 + n − s) quantiles, which keeps its
coverage near the nominal level for small n and rates near 0 or 1, where the normal approximation fails."""

import math

from scipy.stats import beta


def jeffreys_interval(successes: float, n: int, level: float = 0.8) -> tuple[float, float]:
    """[lower, upper] at `level` (0.8: the 0.10 and 0.90 quantiles); s is clamped to [0, n]; n = 0 gives
    [0, 0]; a NaN lower bound becomes 0 and a NaN upper bound 1."""
    if n <= 0:
        return 0.0, 0.0
    s = min(max(float(successes), 0.0), float(n))
    tail = (1 - level) / 2
    lower, upper = beta.ppf(tail, 0.5 + s, 0.5 + n - s), beta.ppf(1 - tail, 0.5 + s, 0.5 + n - s)
    return (0.0 if math.isnan(lower) else float(lower)), (1.0 if math.isnan(upper) else float(upper))
