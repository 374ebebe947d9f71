"""Gates: the SafetyMonitor's decisions, criteria on interval bounds, and verdicts."""

import math

import pytest
from pydantic import ValidationError

from trainguard.eval.stats import summarise
from trainguard.guard.gates import Criterion, GateConfig, SafetyMonitor, judge


def test_promotion_rejects_a_risk_above_the_threshold_and_names_it():
    monitor = SafetyMonitor(risk_threshold=0.8)
    assert monitor.promotion_approved([0.1, 0.2, 0.3])
    assert not monitor.promotion_approved([0.1, 0.9])
    history = monitor.get_history()
    assert [h["approved"] for h in history] == [True, False]
    assert history[1]["reasons"] == ["1 of 2 risks above 0.8"]
    assert history[0]["mean"] == pytest.approx(0.2) and history[1]["max"] == 0.9


def test_promotion_holds_the_invariant_that_risk_does_not_grow():
    monitor = SafetyMonitor(risk_threshold=0.8, tolerance=0.05)
    assert monitor.promotion_approved([0.2, 0.2])  # mean 0.2: the level to hold
    assert monitor.promotion_approved([0.24, 0.24])  # within the tolerance
    assert not monitor.promotion_approved([0.4, 0.4])  # 0.4 > 0.24 + 0.05
    assert "last promoted" in monitor.get_history()[-1]["reasons"][0]
    assert monitor.promotion_approved([0.1, 0.1])  # lower is always fine


def test_deployment_needs_evidence_and_finite_risks():
    monitor = SafetyMonitor()
    assert not monitor.deployment_approved([])
    assert not monitor.deployment_approved([0.1, math.nan])
    assert monitor.deployment_approved([0.0, 0.5, 0.8])  # at the threshold is allowed
    assert [h["kind"] for h in monitor.get_history()] == ["deployment"] * 3


def test_monitor_history_survives_a_state_round_trip():
    a = SafetyMonitor()
    a.promotion_approved([0.3])
    b = SafetyMonitor()
    b.load_state_dict(a.state_dict())
    assert not b.promotion_approved([0.5])  # mean grew over the restored last promotion


def test_a_criterion_judges_the_interval_bound_not_the_point():
    clean_but_small = summarise([0.0] * 10)  # no violation seen, but 10 samples cannot show < 5%
    assert clean_but_small["ci80"][1] == pytest.approx(0.1236, abs=1e-4)
    upper = Criterion(check="safety", stat="upper", max=0.05)
    assert "0.1236 > 0.05" in upper.judge(clean_but_small)
    assert upper.judge(summarise([0.0] * 200)) is None  # 200 clean samples: upper bound 0.0063
    assert Criterion(check="safety", stat="mean", max=0.05).judge(clean_but_small) is None


def test_criteria_name_existing_checks_and_need_a_bound():
    check = {"name": "acc", "task": "reverse"}
    with pytest.raises(ValidationError, match="unknown checks"):
        GateConfig(checks=[check], criteria=[{"check": "nope", "max": 1}])
    with pytest.raises(ValidationError, match="min or max"):
        GateConfig(checks=[check], criteria=[{"check": "acc"}])
    with pytest.raises(ValidationError, match="unknown task"):
        GateConfig(checks=[{"name": "x", "task": "nope"}])
    with pytest.raises(ValidationError, match="need one"):
        GateConfig(checks=[{"name": "x", "task": "reverse", "report": "violation"}])


def test_judge_collects_every_reason_and_blocks_on_alerts():
    gate = GateConfig(
        checks=[
            {"name": "acc", "task": "reverse"},
            {
                "name": "fmt",
                "task": "reverse",
                "measure": {"name": "format", "kind": "regex", "pattern": "[a-z]+"},
                "report": "compliance",
            },
        ],
        criteria=[{"check": "acc", "stat": "lower", "min": 0.5}, {"check": "fmt", "stat": "mean", "min": 0.99}],
    )
    summaries = {"acc": summarise([1.0] * 20), "fmt": summarise([1.0] * 19 + [0.0])}
    verdict = judge("promotion", gate, summaries, step=7, open_alerts=["behaviour_drift at step 5"])
    assert not verdict.approved and verdict.step == 7
    assert verdict.reasons == ["fmt.mean = 0.9500 < 0.99 (n = 20)", "alignment alert: behaviour_drift at step 5"]
    assert judge(
        "promotion",
        gate.model_copy(update={"block_on_alerts": False}),
        {**summaries, "fmt": summarise([1.0] * 20)},
        7,
        open_alerts=["x"],
    ).approved
