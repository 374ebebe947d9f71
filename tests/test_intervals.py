"""The Jeffreys interval against values that follow from the Beta distribution by hand."""

import pytest

from trainguard.eval.intervals import jeffreys_interval


def test_half_a_success_in_one_trial_is_the_uniform_distribution():
    assert jeffreys_interval(0.5, 1) == pytest.approx((0.1, 0.9))  # Beta(1, 1): the quantiles are the levels


def test_symmetry_and_edges():
    lo, hi = jeffreys_interval(1, 2)
    assert lo + hi == pytest.approx(1.0)
    assert jeffreys_interval(0, 0) == (0.0, 0.0)
    lo, hi = jeffreys_interval(0, 10)
    assert lo < 0.001 and hi == pytest.approx(0.1236, abs=1e-3)
    assert jeffreys_interval(-3, 10) == jeffreys_interval(0, 10)  # clamped to [0, n]
    assert jeffreys_interval(12, 10) == jeffreys_interval(10, 10)


def test_more_samples_narrow_the_interval():
    narrow, wide = jeffreys_interval(250, 500), jeffreys_interval(25, 50)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2 and narrow[0] < 0.5 < narrow[1]
