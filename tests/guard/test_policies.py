"""Policies: the strongest mapped action wins; info alerts may only turn knobs."""

from trainguard.guard.alerts import Alert
from trainguard.guard.policies import DEFAULT_POLICIES, decide


def alert(kind: str, severity: str = "warning") -> Alert:
    return Alert(kind, severity, 1, 0.0, 0.0, "")  # type: ignore[arg-type]


def test_strongest_action_wins_and_keeps_its_alerts():
    d = decide([alert("grad_explosion"), alert("nonfinite", "critical"), alert("loss_spike")], DEFAULT_POLICIES)
    assert d.action == "rollback" and d.reason == "loss_spike, nonfinite"


def test_info_alerts_are_recorded_not_acted_on():
    assert decide([alert("update_ratio", "info"), alert("plateau", "info")], DEFAULT_POLICIES).action == "none"


def test_an_info_alert_may_turn_a_knob_but_nothing_stronger():
    assert decide([alert("plateau", "info")], {**DEFAULT_POLICIES, "plateau": "lower_lr"}).action == "lower_lr"
    for action in ("skip_step", "skip_and_cool", "rollback", "stop"):
        assert decide([alert("plateau", "info")], {**DEFAULT_POLICIES, "plateau": action}).action == "none"
    d = decide([alert("diversity_recovered", "info")], DEFAULT_POLICIES)
    assert d.action == "undiversify" and d.reason == "diversity_recovered"


def test_at_equal_strength_a_warnings_action_beats_an_infos():
    alerts = [alert("diversity_recovered", "info"), alert("entropy_collapse")]
    assert decide(alerts, DEFAULT_POLICIES).action == "diversify"
    assert decide(alerts[::-1], DEFAULT_POLICIES).action == "diversify"
    assert decide([alert("diversity_recovered", "info"), alert("grad_explosion")], DEFAULT_POLICIES).action == (
        "skip_step"
    )


def test_a_warning_that_maps_to_none_leaves_no_reason():
    d = decide([alert("reward_failures"), alert("grad_vanishing")], DEFAULT_POLICIES)
    assert d.action == "none" and d.alerts == [] and d.reason == "none"


def test_user_policy_overrides_a_default():
    assert decide([alert("plateau", "warning")], {**DEFAULT_POLICIES, "plateau": "stop"}).action == "stop"


def test_no_alerts_no_action():
    assert decide([], DEFAULT_POLICIES).action == "none"


def test_an_alerts_severity_survives_the_console():
    import io

    from rich.console import Console

    from trainguard.ui.console import alert_markup

    out = io.StringIO()
    Console(file=out, width=200).print(alert_markup(Alert("loss_spike", "warning", 7, 9.0, 1.0, "roll back")))
    assert out.getvalue().startswith("[warning] loss_spike at step 7")
