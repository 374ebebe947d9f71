"""Step detectors at their threshold boundaries."""

import math
import statistics

import pytest

from trainguard.guard.detectors import (
    DetectorConfig,
    DivergenceConfig,
    DivergenceDetector,
    GradNormConfig,
    GradNormDetector,
    LossSpikeConfig,
    LossSpikeDetector,
    NonFiniteDetector,
    OscillationConfig,
    OscillationDetector,
    PlateauConfig,
    PlateauDetector,
    UpdateRatioConfig,
    UpdateRatioDetector,
)
from trainguard.guard.window import RollingWindow


def m(loss: float = 1.0, grad: float = 1.0, **extra: float) -> dict[str, float]:
    return {"loss/train": loss, "grad/norm": grad, "grad/nan_count": 0, "grad/inf_count": 0, **extra}


def feed(detector, values, key="loss"):
    for i, v in enumerate(values):
        assert detector.observe(m(**{key: v}), i) == []


def test_window_mean_and_std_match_statistics():
    w = RollingWindow(4)
    for v in (1.0, 2.0, 4.0, 8.0, 16.0):
        w.push(v)
    assert list(w.values) == [2.0, 4.0, 8.0, 16.0]
    assert w.mean == statistics.fmean([2, 4, 8, 16]) and w.std == pytest.approx(statistics.pstdev([2, 4, 8, 16]))


@pytest.mark.parametrize("metrics", [m(loss=math.nan), m(grad=math.inf), m(**{"grad/nan_count": 1})])
def test_nonfinite_is_critical(metrics):
    (alert,) = NonFiniteDetector(DetectorConfig()).observe(metrics, 7)
    assert (alert.kind, alert.severity, alert.step) == ("nonfinite", "critical", 7)


def test_finite_step_is_quiet():
    assert NonFiniteDetector(DetectorConfig()).observe(m(), 1) == []


def test_grad_norm_absolute_explosion_boundary():
    d = GradNormDetector(GradNormConfig())
    assert d.observe(m(grad=1000.0), 0) == []
    (alert,) = d.observe(m(grad=1000.5), 1)
    assert (alert.kind, alert.severity, alert.threshold) == ("grad_explosion", "critical", 1000.0)


def armed(**cfg: float) -> GradNormDetector:
    """A detector whose window holds 64 values of mean 1.0 and std 0.1."""
    d = GradNormDetector(GradNormConfig(**cfg))
    d.window.load_state_dict([0.9, 1.1] * 32)
    return d


def test_grad_norm_six_sigma_boundary_once_half_full():
    d = GradNormDetector(GradNormConfig(window=128, min_ratio=1.0))
    feed(d, [0.9, 1.1] * 31 + [0.9], key="grad")  # 63 values: not yet armed
    assert d.observe(m(grad=500.0), 63) == []  # (a value over 1000 would still be caught)
    assert armed(min_ratio=1.0).observe(m(grad=1.6), 64) == []  # bound: 1.0 + 6 x 0.1
    (alert,) = armed(min_ratio=1.0).observe(m(grad=1.61), 64)
    assert alert.severity == "warning" and alert.threshold == pytest.approx(1.6)


def test_grad_norm_spike_also_needs_min_ratio_times_the_mean():
    assert armed().observe(m(grad=9.99), 64) == []  # min_ratio 10 x mean 1.0
    assert armed().observe(m(grad=10.01), 64)[0].kind == "grad_explosion"


def test_flagged_values_stay_out_of_the_window():
    d = GradNormDetector(GradNormConfig(min_ratio=1.0))
    feed(d, [0.9, 1.1] * 32, key="grad")
    for step in range(5):
        assert d.observe(m(grad=50.0), 64 + step)  # a burst keeps alerting: the band did not widen


def test_vanishing_gradient_boundary():
    d = GradNormDetector(GradNormConfig())
    assert d.observe(m(grad=1e-8), 0) == []
    assert d.observe(m(grad=9e-9), 1)[0].kind == "grad_vanishing"
    assert d.observe(m(loss=0.0, grad=0.0), 2) == []  # nothing to learn (an RL step with no reward spread)


def test_loss_spike_six_sigma_boundary():
    d = LossSpikeDetector(LossSpikeConfig(window=10))
    feed(d, [1.9, 2.1] * 2 + [1.9])  # 5 values: armed (half of 10)
    w = [1.9, 2.1, 1.9, 2.1, 1.9]
    bound = statistics.fmean(w) + 6 * statistics.pstdev(w)
    assert d.observe(m(loss=bound - 1e-9), 5) == []
    d.window.load_state_dict(w)
    (alert,) = d.observe(m(loss=bound + 1e-6), 6)
    assert alert.kind == "loss_spike" and alert.threshold == pytest.approx(bound)


def test_divergence_absolute_and_relative():
    d = DivergenceDetector(DivergenceConfig())
    assert d.observe(m(loss=10.0), 0) == []
    assert d.observe(m(loss=10.01), 1)[0].severity == "critical"
    d = DivergenceDetector(DivergenceConfig(warmup=3, patience=3, smoothing=0.0, min_gap=0.0))
    feed(d, [1.0, 1.0, 1.0, 0.5])  # minimum 0.5 after warm-up
    assert d.observe(m(loss=1.0), 4) == [] and d.observe(m(loss=1.01), 5) == []  # 1.0 is not above 2x0.5
    assert d.observe(m(loss=1.01), 6) == []
    (alert,) = d.observe(m(loss=1.01), 7)  # third consecutive step above the bound
    assert alert.kind == "divergence" and alert.threshold == pytest.approx(1.0)


def test_divergence_ignores_tiny_losses_within_min_gap():
    d = DivergenceDetector(DivergenceConfig(warmup=0, patience=1, smoothing=0.0))
    feed(d, [0.01])
    assert d.observe(m(loss=0.05), 1) == []  # 5x the minimum but only 0.04 above it


def test_plateau_after_window_without_improvement():
    d = PlateauDetector(PlateauConfig(window=5, smoothing=0.0))
    feed(d, [1.0] * 5)  # the first sets the best; 4 more without improvement
    (alert,) = d.observe(m(loss=1.0), 5)
    assert (alert.kind, alert.severity) == ("plateau", "info")


def test_oscillation_flags_alternating_losses_only():
    d = OscillationDetector(OscillationConfig(window=10, max_rate=0.9))
    alerts = [a for i, v in enumerate([1.0, 2.0] * 8) for a in d.observe(m(loss=v), i)]
    assert [a.kind for a in alerts] == ["oscillation"]
    d = OscillationDetector(OscillationConfig(window=10))
    assert not [a for i in range(40) for a in d.observe(m(loss=5 - 0.1 * i + 0.05 * (i % 3 == 0)), i)]


def test_update_ratio_bands():
    d = UpdateRatioDetector(UpdateRatioConfig())
    assert d.observe({"weights/update_ratio": 1e-3}, 0) == []
    assert d.observe({"weights/update_ratio": 0.0999}, 1)[0].severity == "info"
    assert d.observe({"weights/update_ratio": 0.05}, 2) == []  # info cooldown
    assert d.observe({"weights/update_ratio": 0.1}, 3)[0].severity == "warning"
    assert d.observe({"weights/update_ratio": 1e-7}, 104)[0].severity == "info"  # slow, not broken
    assert d.observe({"weights/update_ratio": 0.0}, 5) == []  # a skipped update


def test_update_ratio_jump_over_its_recent_mean():
    d = UpdateRatioDetector(UpdateRatioConfig(window=4))
    for i in range(4):
        assert d.observe({"weights/update_ratio": 1e-3}, i) == []
    assert d.observe({"weights/update_ratio": 4.99e-3}, 4) == []  # under 5x the mean
    d.window.load_state_dict([1e-3] * 4)
    (alert,) = d.observe({"weights/update_ratio": 5.01e-3}, 5)
    assert alert.severity == "warning" and alert.threshold == pytest.approx(5e-3)


def test_detector_state_round_trips():
    d = LossSpikeDetector(LossSpikeConfig(window=8))
    feed(d, [1.0, 2.0, 3.0])
    e = LossSpikeDetector(LossSpikeConfig(window=8))
    e.load_state_dict(d.state_dict())
    assert list(e.window.values) == [1.0, 2.0, 3.0]
