"""Learning-rate schedule against hand-computed values."""

import math

import pytest

from trainguard.engine.schedule import lr_at


def test_warmup_is_linear_up_to_the_peak():
    assert [lr_at(s, 1.0, 100, 4, 0.1) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]


def test_cosine_reaches_min_ratio_at_the_last_step():
    # total 104, warmup 4: decay spans steps 4..103; the midpoint 53.5 is halfway down.
    assert lr_at(4, 2.0, 104, 4, 0.1) == pytest.approx(2.0)
    assert lr_at(103, 2.0, 104, 4, 0.1) == pytest.approx(0.2)
    mid = 2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 50 / 99)))
    assert lr_at(54, 2.0, 104, 4, 0.1) == pytest.approx(mid)
    assert lr_at(500, 2.0, 104, 4, 0.1) == pytest.approx(0.2)  # past the end it stays at the floor


def test_constant_after_warmup():
    assert lr_at(1, 1.0, 10, 2, 0.1, "constant") == 1.0
    assert lr_at(9, 1.0, 10, 2, 0.1, "constant") == 1.0


def test_no_warmup_starts_at_the_peak():
    assert lr_at(0, 3.0, 10, 0, 0.0) == 3.0
