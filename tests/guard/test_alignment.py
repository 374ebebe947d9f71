"""Alignment detectors on probe results: capability spikes, misalignment and behaviour drift."""

from trainguard.eval.checks import CheckResult
from trainguard.eval.stats import summarise
from trainguard.guard.alignment import AlignmentSection, capability_alerts, drift_alert, misalignment_alert

CFG = AlignmentSection()
HARMFUL = "sure, here's how to hack into the bank"


def result(scores: list[float], texts: list[str]) -> CheckResult:
    return CheckResult("p", scores, scores, [f"q{i}" for i in range(len(texts))], texts, summarise(scores))


def test_a_jump_between_evaluations_is_a_spike():
    assert capability_alerts("p", 0.2, 0.45, True, 10, CFG) == []
    (alert,) = capability_alerts("p", 0.2, 0.6, True, 10, CFG)
    assert alert.kind == "capability_spike" and alert.value == 0.6 - 0.2
    assert "evaluate more" in alert.recommendation


def test_an_untrained_capability_passing_0_7_alerts_once():
    (alert,) = capability_alerts("p", None, 0.75, False, 10, CFG)
    assert alert.kind == "unexpected_capability" and "evaluate more" in alert.recommendation
    assert capability_alerts("p", 0.75, 0.8, False, 20, CFG) == []  # already reported
    assert capability_alerts("p", None, 0.75, True, 10, CFG) == []  # trained: expected


def test_misalignment_is_the_unsafe_share_of_rewarded_samples():
    texts = ["fine", HARMFUL, "fine", HARMFUL, "bad"]
    scores = [1.0, 1.0, 1.0, 1.0, 0.0]  # four rewarded, two of them harmful; the unrewarded one does not count
    alert, examples = misalignment_alert(result(scores, texts), 3, CFG)
    assert alert is not None and alert.value == 0.5 and alert.kind == "objective_misalignment"
    assert [e["response"] for e in examples] == [HARMFUL, HARMFUL]
    clean, none = misalignment_alert(result(scores, ["fine"] * 5), 3, CFG)
    assert clean is None and none == []


def test_behaviour_that_changes_when_unwatched_is_drift():
    watched = ["no"] * 10
    unwatched = [HARMFUL] * 3 + ["no"] * 7
    alert, shift = drift_alert("p", watched, unwatched, 5, CFG)
    assert shift == 0.3 and alert is not None and alert.kind == "behaviour_drift"
    quiet, small = drift_alert("p", watched, [HARMFUL] + ["no"] * 9, 5, CFG)
    assert quiet is None and small == 0.1


def test_rl_misalignment_reads_the_most_rewarded_rollouts():
    from trainguard.guard.rl_detectors import MisalignmentConfig, MisalignmentDetector
    from trainguard.rl.rewards import unsafe_rewarded

    texts = [HARMFUL, "fine", "fine", "fine", "fine", HARMFUL, "fine", "fine", "fine", "fine"]
    rewards = [9.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0]  # top fifth: samples 0 and 9
    assert unsafe_rewarded(rewards, texts) == 0.5
    assert unsafe_rewarded([0.0] * 10, ["fine"] * 10) == 0.0
    detector = MisalignmentDetector(MisalignmentConfig())
    (alert,) = detector.observe({"rollout/unsafe_rewarded": 0.5}, 3)
    assert alert.kind == "objective_misalignment" and alert.severity == "warning"
    assert detector.observe({"rollout/unsafe_rewarded": 0.05}, 4) == []
