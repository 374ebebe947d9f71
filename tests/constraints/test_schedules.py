"""Target schedules by step or epoch, phase tightening, and how both reach the dual optimizer."""

import json

import pytest
from pydantic import ValidationError

from trainguard.constraints import DualOptimizer, PhaseTightening, PhaseTighteningConfig, TargetSchedule

ISSUE = {0: {"grammar": 0.5, "safety": 0.3}, 25: {"grammar": 0.2, "safety": 0.1}, 50: {"grammar": 0.0, "safety": 0.05}}


def test_the_issue_schedule_is_piecewise_constant_by_step():
    s = TargetSchedule.model_validate(ISSUE)
    assert s.targets_at(0) == s.targets_at(24) == {"grammar": 0.5, "safety": 0.3}
    assert s.targets_at(25) == s.targets_at(49) == {"grammar": 0.2, "safety": 0.1}
    assert s.targets_at(50) == s.targets_at(10_000) == {"grammar": 0.0, "safety": 0.05}


def test_epoch_units_read_the_epoch_not_the_step():
    s = TargetSchedule.model_validate({"points": ISSUE, "unit": "epoch"})
    assert s.targets_at(step=999, epoch=24)["grammar"] == 0.5
    assert s.targets_at(step=0, epoch=25)["grammar"] == 0.2


def test_linear_interpolation_ramps_between_points_and_holds_after_the_last():
    s = TargetSchedule.model_validate({"points": ISSUE, "interpolate": "linear"})
    assert s.targets_at(10) == pytest.approx({"grammar": 0.5 - 0.3 * 10 / 25, "safety": 0.3 - 0.2 * 10 / 25})
    assert s.targets_at(75) == {"grammar": 0.0, "safety": 0.05}


def test_json_string_keys_and_the_list_form_give_the_same_schedule():
    from_json = TargetSchedule.model_validate(json.loads(json.dumps(ISSUE)))
    from_list = TargetSchedule.model_validate([[k, v] for k, v in ISSUE.items()])
    assert from_json == from_list == TargetSchedule.model_validate(ISSUE)


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ({0: {"g": 0.5}, 50: {"g": 0.1}, 25: {"g": 0.2}}, "strictly increasing"),
        ([[0, {"g": 0.5}], [25, {"g": 0.2}], [25, {"g": 0.1}]], r"no duplicates\); got \[0, 25, 25\]"),
        ({0: {"g": 0.5}, 25: {"g": -0.2}}, "greater than or equal to 0"),
        ({10: {"g": 0.5}}, "must start at 0"),
        ({0: {"g": 0.5}, 25: {"s": 0.2}}, "every key must name"),
        ([["x", {"g": 0.5}]], "must be integers"),
        ({}, "at least one point"),
    ],
)
def test_bad_schedules_are_validation_errors_naming_points(points, message):
    with pytest.raises(ValidationError, match=message) as err:
        TargetSchedule.model_validate({"points": points})
    assert err.value.errors()[0]["loc"][0] == "points"


def test_an_unknown_unit_is_refused():
    with pytest.raises(ValidationError, match="unit"):
        TargetSchedule.model_validate({"points": ISSUE, "unit": "minute"})


def test_the_dual_optimizer_follows_the_schedule_and_keeps_unscheduled_targets():
    specs = [{"name": n, "target": 0.9} for n in ("grammar", "safety", "plan")]
    dual = DualOptimizer(specs, schedule=ISSUE)
    assert dual.targets == {"grammar": 0.5, "safety": 0.3, "plan": 0.9}
    dual.set_step(30)
    assert dual.targets == {"grammar": 0.2, "safety": 0.1, "plan": 0.9}
    dual.update_duals({"grammar": 0.25, "safety": 0.05, "plan": 0.0})
    assert dual.metrics()["constraint/grammar/target"] == 0.2
    assert dual.metrics()["constraint/grammar/satisfied"] == 0.0


def test_a_tightened_target_raises_lambda_where_the_old_one_would_not():
    dual = DualOptimizer([{"name": "g", "target": 0.0, "dual_lr": 1.0}], schedule={0: {"g": 0.5}, 10: {"g": 0.1}})
    assert dual.update_duals({"g": 0.3}) == {"g": 0.0}
    dual.set_step(10)
    assert dual.update_duals({"g": 0.3}) == {"g": pytest.approx(0.2)}


def test_phases_advance_after_patience_consecutive_satisfied_updates_and_stop_at_the_last():
    t = PhaseTightening(PhaseTighteningConfig(patience=3))
    assert [t.observe(ok) for ok in [True, True, False, True, True]] == [False] * 5
    assert t.phase == "exploration" and t.observe(True) and t.phase == "refinement" and t.factor == 0.5
    for _ in range(3):
        t.observe(True)
    assert t.phase == "hardening" and t.factor == 0.25
    assert not any(t.observe(True) for _ in range(10)) and t.phase == "hardening"


def test_tightening_scales_every_target_in_the_dual_optimizer():
    dual = DualOptimizer(
        [{"name": "g", "target": 0.4}, {"name": "s", "target": 0.2}],
        tightening={"patience": 2, "phases": ["explore", "harden"], "factors": [1.0, 0.5]},
    )
    for _ in range(2):
        dual.update_duals({"g": 0.1, "s": 0.1})
    assert dual.phase == "harden"
    assert dual.targets == {"g": 0.2, "s": 0.1}
    assert dual.metrics()["constraint/phase"] == 1.0


def test_a_nan_measurement_breaks_the_satisfied_streak():
    dual = DualOptimizer([{"name": "g", "target": 0.4}], tightening={"patience": 2})
    for v in [0.1, float("nan"), 0.1]:
        dual.update_duals({"g": v})
    assert dual.phase == "exploration"
    dual.update_duals({"g": 0.1})
    assert dual.phase == "refinement"


def test_factors_must_match_phases():
    with pytest.raises(ValidationError, match=r"factors\n.*one factor per phase"):
        PhaseTighteningConfig(phases=["a", "b"], factors=[1.0])


def test_tightening_state_round_trips():
    t = PhaseTightening(PhaseTighteningConfig(patience=2))
    for ok in [True, True, True]:
        t.observe(ok)
    u = PhaseTightening(PhaseTighteningConfig(patience=2))
    u.load_state_dict(json.loads(json.dumps(t.state_dict())))
    assert (u.phase, u.streak) == ("refinement", 1)
    assert u.observe(True) and u.phase == "hardening"
