"""Summary statistics of per-sample scores in [0, 1], each task's with its 80% Jeffreys interval, and their
sample-weighted aggregate over tasks (the numbers `trainguard eval` writes and `trainguard compare` reads)."""

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from trainguard.eval.intervals import jeffreys_interval

CI_LEVEL = 0.8  # ci80: the 0.10 and 0.90 quantiles


def interval(n: int, total: float) -> list[float]:
    """ci80 from a sample count and a score sum (the sum counts as successes: a score of 0.5 is half a
    success); n = 0 gives [0, 0], a NaN bound becomes 0 (lower) or 1 (upper)."""
    lo, hi = jeffreys_interval(total, n, CI_LEVEL)
    return [lo, hi]


def summarise(scores: Sequence[float]) -> dict[str, Any]:
    """n, sum, mean, std, median, accuracy (share of scores > 0.5), success_rate (share > 0) and ci80.

    `std` is the population standard deviation (ddof = 0): the scores are the whole evaluated set, and the
    aggregate can then pool it exactly. No scores gives zeros and ci80 [0, 0]. A NaN score is kept, not hidden:
    sum, mean, std and median become NaN, ci80 [0, 1] (the NaN rule), and it counts as neither accurate nor a
    success."""
    values = [float(s) for s in scores]
    n = len(values)
    if n == 0:
        zeros = dict.fromkeys(("sum", "mean", "std", "median", "accuracy", "success_rate"), 0.0)
        return {"n": 0, **zeros, "ci80": [0.0, 0.0]}
    total = math.fsum(values)
    mean = total / n
    has_nan = any(math.isnan(v) for v in values)
    return {
        "n": n,
        "sum": total,
        "mean": mean,
        "std": math.nan if has_nan else math.sqrt(math.fsum((v - mean) ** 2 for v in values) / n),
        "median": math.nan if has_nan else float(statistics.median(values)),
        "accuracy": sum(v > 0.5 for v in values) / n,
        "success_rate": sum(v > 0 for v in values) / n,
        "ci80": interval(n, total),
    }


def aggregate(tasks: Mapping[str, Mapping[str, Any]], scores: Sequence[float] | None = None) -> dict[str, Any]:
    """All tasks as one pool of samples, so a task weighs by its sample count: n = Σn, sum = Σsum,
    mean = sum / n, accuracy and success_rate weighted by n, ci80 from the pooled n and sum.

    `std` is the exact population std of the pooled samples, from each task's n, mean and std
    (Σ n_i (std_i² + mean_i²) / N − mean²). A median cannot be pooled from summaries: with `scores` (every
    sample's score) it is the exact pooled median; without, the n-weighted median of the task medians (each
    task's median repeated n times), an approximation."""
    rows = [t for t in tasks.values() if t["n"] > 0]
    n = sum(int(t["n"]) for t in rows)
    if n == 0:
        return summarise([])
    total = math.fsum(float(t["sum"]) for t in rows)
    mean = total / n
    second_moment = math.fsum(t["n"] * (t["std"] ** 2 + t["mean"] ** 2) for t in rows) / n
    if scores is not None:
        median = summarise(scores)["median"]
    else:
        median = weighted_median([(float(t["median"]), int(t["n"])) for t in rows])
    return {
        "n": n,
        "sum": total,
        "mean": mean,
        "std": math.sqrt(max(second_moment - mean**2, 0.0)) if not math.isnan(second_moment) else math.nan,
        "median": median,
        "accuracy": math.fsum(t["n"] * t["accuracy"] for t in rows) / n,
        "success_rate": math.fsum(t["n"] * t["success_rate"] for t in rows) / n,
        "ci80": interval(n, total),
    }


def weighted_median(pairs: Sequence[tuple[float, int]]) -> float:
    """The median of the multiset in which each value appears `weight` times (the two middle values'
    mean when the total weight is even), without building that multiset."""
    ordered = sorted(pairs)
    total = sum(w for _, w in ordered)

    def at(k: int) -> float:  # the k-th value (0-based) of the expanded multiset
        seen = 0
        for value, weight in ordered:
            seen += weight
            if k < seen:
                return value
        return ordered[-1][0]

    if total == 0:
        return 0.0
    return at(total // 2) if total % 2 else (at(total // 2 - 1) + at(total // 2)) / 2
