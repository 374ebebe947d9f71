"""Per-task statistics and their sample-weighted aggregate, against numbers worked out by hand."""

import math

import pytest

from trainguard.eval.stats import aggregate, interval, summarise, weighted_median


def sig4(values: list[float]) -> list[str]:
    return [f"{v:.4g}" for v in values]


def test_the_issues_three_intervals_to_four_significant_digits():
    assert sig4(interval(10, 5)) == ["0.3099", "0.6901"]
    assert sig4(interval(10, 0)) == ["0.0007698", "0.1236"]  # the issue's 0.00077
    assert sig4(interval(200, 150)) == ["0.7091", "0.7874"]


def test_summarise_reads_the_interval_from_the_score_sum():
    assert sig4(summarise([1.0] * 5 + [0.0] * 5)["ci80"]) == ["0.3099", "0.6901"]
    assert sig4(summarise([1.0] * 150 + [0.0] * 50)["ci80"]) == ["0.7091", "0.7874"]


def test_summarise_by_hand():
    s = summarise([1.0, 0.0, 0.5, 1.0])
    assert s["n"] == 4 and s["sum"] == 2.5 and s["mean"] == 0.625
    # population std: deviations .375, -.625, -.125, .375 -> squares sum .6875, / 4 = .171875
    assert s["std"] == pytest.approx(math.sqrt(0.171875))
    assert s["median"] == 0.75
    assert s["accuracy"] == 0.5  # 0.5 is not above 0.5
    assert s["success_rate"] == 0.75
    assert s["ci80"] == list(interval(4, 2.5))


def test_no_scores_give_zeros_and_a_zero_interval():
    s = summarise([])
    assert s == {"n": 0, "sum": 0.0, "mean": 0.0, "std": 0.0, "median": 0.0, "accuracy": 0.0,
                 "success_rate": 0.0, "ci80": [0.0, 0.0]}  # fmt: skip
    assert interval(0, 3) == [0.0, 0.0]


def test_a_nan_sum_gives_the_widest_interval():
    assert interval(10, math.nan) == [0.0, 1.0]  # NaN lower -> 0, NaN upper -> 1
    s = summarise([1.0, math.nan])
    assert math.isnan(s["sum"]) and math.isnan(s["std"]) and math.isnan(s["median"])
    assert s["ci80"] == [0.0, 1.0] and s["accuracy"] == 0.5 and s["success_rate"] == 0.5


def test_aggregate_pools_the_samples():
    a, b = summarise([1.0, 0.0, 1.0]), summarise([0.5, 0.25])
    agg = aggregate({"a": a, "b": b})
    assert agg["n"] == 5 and agg["sum"] == 2.75 and agg["mean"] == pytest.approx(0.55)
    # all five scores: deviations .45 -.55 .45 -.05 -.30, squares sum .8, / 5 = .16
    assert agg["std"] == pytest.approx(0.4)
    assert agg["accuracy"] == pytest.approx(2 / 5) and agg["success_rate"] == pytest.approx(4 / 5)
    assert agg["ci80"] == list(interval(5, 2.75))
    assert agg["median"] == 1.0  # weighted median of task medians: 0.375 x2, 1.0 x3
    assert aggregate({"a": a, "b": b}, [1.0, 0.0, 1.0, 0.5, 0.25])["median"] == 0.5  # exact with the scores


def test_aggregate_skips_empty_tasks_and_is_zero_without_samples():
    a = summarise([1.0, 0.0])
    assert aggregate({"a": a, "empty": summarise([])}) == aggregate({"a": a})
    assert aggregate({"empty": summarise([])}) == summarise([])


def test_weighted_median():
    assert weighted_median([(0.2, 1), (0.9, 1)]) == pytest.approx(0.55)
    assert weighted_median([(0.9, 1), (0.2, 2)]) == 0.2
    assert weighted_median([]) == 0.0
