"""RL detectors on hand-made metric sequences, their policies, and the knob actions they ask for."""

import json
import math
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.engine.state import Knobs
from trainguard.guard.actions import ACTIONS, Action
from trainguard.guard.alerts import Alert
from trainguard.guard.guard import Guard, GuardSection
from trainguard.guard.policies import DEFAULT_POLICIES, decide
from trainguard.guard.rl_detectors import (
    EntropyCollapseConfig,
    EntropyCollapseDetector,
    KlBlowupConfig,
    KlBlowupDetector,
    RewardFailuresConfig,
    RewardFailuresDetector,
    RewardHackingConfig,
    RewardHackingDetector,
    ZeroSpreadConfig,
    ZeroSpreadDetector,
)
from trainguard.track.store import read_metrics, read_table

RL_DETECTORS = {
    "reward_hacking": (RewardHackingDetector, RewardHackingConfig),
    "entropy_collapse": (EntropyCollapseDetector, EntropyCollapseConfig),
    "zero_spread": (ZeroSpreadDetector, ZeroSpreadConfig),
    "kl_blowup": (KlBlowupDetector, KlBlowupConfig),
    "reward_failures": (RewardFailuresDetector, RewardFailuresConfig),
}
SFT_METRICS = {"loss/train": 1.0, "grad/norm": 1.0, "grad/nan_count": 0, "grad/inf_count": 0, "opt/lr": 1e-3}


def make(name: str, **config):
    cls, cfg = RL_DETECTORS[name]
    return cls(cfg(**config))


def rl(**over: float) -> dict[str, float]:
    """A healthy RL step's metrics, with some replaced."""
    base = {
        "loss/train": 0.1,
        "grad/norm": 1.0,
        "rollout/reward_mean": 0.5,
        "rollout/verifier_mean": 0.5,
        "rollout/length_reward_corr": 0.2,
        "rollout/frac_reward_zero_std": 0.3,
        "rollout/reward_failure_rate": 0.0,
        "rl/entropy": 2.0,
        "rl/kl": 0.05,
        "rl/approx_kl": 0.01,
    }
    return {k: v for k, v in {**base, **over}.items() if not math.isnan(v)}


def run(detector, steps: list[dict[str, float]], start: int = 0) -> list[tuple[int, str, str]]:
    """(step, kind, severity) of every alert over the sequence."""
    return [(a.step, a.kind, a.severity) for i, s in enumerate(steps, start) for a in detector.observe(s, i)]


def healthy_run(n: int = 120) -> list[dict[str, float]]:
    """Reward and verifier rise together, entropy eases down to 60% of its start, spread and KL stay sane."""
    return [
        rl(
            **{
                "rollout/reward_mean": 0.2 + 0.005 * i + 0.02 * (-1) ** i,
                "rollout/verifier_mean": 0.25 + 0.005 * i - 0.02 * (-1) ** i,
                "rollout/length_reward_corr": 0.9 if i % 7 == 0 else 0.4,  # high at times, never for long
                "rollout/frac_reward_zero_std": 1.0 if i % 5 == 0 else 0.4,
                "rollout/reward_failure_rate": 0.05 if i % 3 == 0 else 0.0,
                "rl/entropy": 2.0 - 0.8 * i / n,
                "rl/kl": 0.001 * i,
                "rl/approx_kl": 0.02,
            }
        )
        for i in range(n)
    ]


def hacked(n: int, verifier: bool = True, corr: float = 0.2) -> list[dict[str, float]]:
    """Reward up 0.01 a step from the start; the verifier flat for 10 steps, then down 0.02 a step."""
    return [
        rl(
            **{
                "rollout/reward_mean": 0.5 + 0.01 * i,
                "rollout/verifier_mean": (0.6 - 0.02 * max(0, i - 9)) if verifier else math.nan,
                "rollout/length_reward_corr": corr,
            }
        )
        for i in range(n)
    ]


# -- silence ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", RL_DETECTORS)
def test_a_healthy_rl_run_is_silent(name):
    assert run(make(name), healthy_run()) == []


@pytest.mark.parametrize("name", RL_DETECTORS)
def test_sft_metrics_without_rl_keys_are_ignored(name):
    d = make(name)
    before = json.dumps(d.state_dict())
    assert run(d, [SFT_METRICS] * 30) == []
    assert json.dumps(d.state_dict()) == before  # a step without its keys teaches it nothing


def test_a_guard_with_every_detector_runs_through_sft_and_rl_steps():
    guard = Guard(GuardSection())
    assert set(RL_DETECTORS) <= set(guard.detectors)
    for step in range(1, 30):
        assert guard.observe(SFT_METRICS, step, "pre") == []  # no ConfigError: no `metric` field to check
    assert [a for i, s in enumerate(healthy_run(), 30) for a in guard.observe(s, i, "pre")] == []


# -- reward hacking -----------------------------------------------------------------------------------
def test_reward_up_verifier_down_is_critical_once_per_window():
    alerts = run(make("reward_hacking", min_steps=20), hacked(45))
    assert alerts == [(19, "reward_hacking", "critical"), (39, "reward_hacking", "critical")]  # window refills


def test_reward_hacking_values_are_the_halves_difference():
    d = make("reward_hacking", min_steps=20)
    (alert,) = [a for i, s in enumerate(hacked(20)) for a in d.observe(s, i)]
    assert alert.value == pytest.approx(0.11) and alert.threshold == 0.05  # verifier fall: 0.02 x mean(1..10)
    assert alert.data["reward_rise"] == pytest.approx(0.10)


def test_a_hack_that_takes_hold_in_a_few_steps_is_caught_once_eight_are_seen():
    # the length proxy of examples/reward_hacking.yaml: the reward saturates and the verifier hits 0 in 8 steps
    reward = [0.2, 0.21, 0.22, 0.34, 0.55, 0.8, 0.95, 0.97]
    verifier = [0.23, 0.2, 0.06, 0.1, 0.0, 0.02, 0.0, 0.0]
    steps = [
        rl(**{"rollout/reward_mean": r, "rollout/verifier_mean": v}) for r, v in zip(reward, verifier, strict=True)
    ]
    assert run(make("reward_hacking"), steps) == [(7, "reward_hacking", "critical")]
    assert run(make("reward_hacking", min_steps=9), steps) == []


def test_reward_and_verifier_rising_together_is_silent():
    steps = [rl(**{"rollout/reward_mean": 0.01 * i, "rollout/verifier_mean": 0.01 * i}) for i in range(60)]
    assert run(make("reward_hacking"), steps) == []


def test_without_a_verifier_a_rising_reward_is_not_hacking():
    assert run(make("reward_hacking"), hacked(60, verifier=False)) == []


def test_reward_tracking_length_for_patience_steps_warns():
    steps = hacked(40, verifier=False)
    for i in range(25, 40):
        steps[i]["rollout/length_reward_corr"] = 0.9
    assert run(make("reward_hacking"), steps) == [(29, "reward_hacking", "warning")]  # 25..29: five steps


def test_a_high_correlation_shorter_than_patience_is_silent():
    steps = hacked(40, verifier=False)
    for i in (25, 30, 31, 32, 33):  # once, then four in a row
        steps[i]["rollout/length_reward_corr"] = 0.95
    assert run(make("reward_hacking"), steps) == []


def test_a_high_correlation_with_a_flat_reward_is_silent():
    steps = [rl(**{"rollout/length_reward_corr": 0.95}) for _ in range(40)]
    assert run(make("reward_hacking"), steps) == []


# -- entropy collapse ---------------------------------------------------------------------------------
def entropy(values: list[float]) -> list[dict[str, float]]:
    return [rl(**{"rl/entropy": v}) for v in values]


def test_entropy_collapse_warns_repeats_after_cooldown_and_recovers_once():
    values = [2.0] * 5 + [1.5, 1.0, 0.7, 0.59] + [0.5] * 11 + [0.8, 1.1, 1.2]
    # start 2.0: collapsed below 0.6 (step 8), again 10 steps later (18), recovered above 1.0 (21)
    assert run(make("entropy_collapse", min_fraction=0.3), entropy(values)) == [
        (8, "entropy_collapse", "warning"),
        (18, "entropy_collapse", "warning"),
        (21, "diversity_recovered", "info"),
    ]


def test_entropy_start_level_is_the_warmup_mean():
    d = make("entropy_collapse", warmup=2, min_fraction=0.3)
    assert run(d, entropy([3.0, 1.0, 0.61, 0.59])) == [(3, "entropy_collapse", "warning")]  # start 2.0 -> 0.6


def test_entropy_between_the_bounds_neither_warns_nor_recovers():
    assert run(make("entropy_collapse", min_fraction=0.3), entropy([2.0] * 5 + [0.9, 0.61, 0.95, 0.7] * 5)) == []


def test_entropy_falling_while_the_reward_rises_or_everything_is_solved_is_convergence():
    # the policy gets right: entropy falls to 10% of its start while the reward climbs (a full window)
    learning = [rl(**{"rl/entropy": 2.0 - 0.06 * i, "rollout/reward_mean": 0.02 * i}) for i in range(31)]
    assert run(make("entropy_collapse", min_fraction=0.3), learning) == []  # below 30% of the start from step 24 on
    rising = [rl(**{"rl/entropy": v, "rollout/reward_mean": 0.03 * i}) for i, v in enumerate([2.0] * 5 + [0.2] * 25)]
    # no evidence of learning until the window fills (step 19): it warns at 5 and 15, then falls silent
    assert run(make("entropy_collapse", min_fraction=0.3), rising) == [
        (5, "entropy_collapse", "warning"),
        (15, "entropy_collapse", "warning"),
    ]
    flat_solved = [rl(**{"rl/entropy": v, "rollout/success_rate": 0.95}) for v in [2.0] * 5 + [0.2] * 25]
    assert run(make("entropy_collapse", min_fraction=0.3), flat_solved) == []
    flat_failing = [rl(**{"rl/entropy": v, "rollout/success_rate": 0.1}) for v in [2.0] * 5 + [0.2] * 25]
    assert run(make("entropy_collapse", min_fraction=0.3), flat_failing)[0] == (5, "entropy_collapse", "warning")


def test_recover_fraction_below_min_fraction_is_refused():
    with pytest.raises(ValidationError, match="recover_fraction"):
        EntropyCollapseConfig(min_fraction=0.5, recover_fraction=0.4)


# -- zero spread --------------------------------------------------------------------------------------
def spread(values: list[float]) -> list[dict[str, float]]:
    return [rl(**{"rollout/frac_reward_zero_std": v}) for v in values]


def test_zero_spread_warns_every_patience_steps_and_recovers_once():
    assert run(make("zero_spread"), spread([1.0] * 7 + [0.5, 0.5, 1.0])) == [
        (2, "zero_spread", "warning"),
        (5, "zero_spread", "warning"),
        (7, "diversity_recovered", "info"),
    ]


def test_no_spread_because_everything_is_solved_is_silent():
    steps = [rl(**{"rollout/frac_reward_zero_std": 1.0, "rollout/success_rate": 1.0}) for _ in range(10)]
    assert run(make("zero_spread"), steps) == []


def test_zero_spread_interrupted_before_patience_is_silent():
    assert run(make("zero_spread"), spread([1.0, 1.0, 0.9, 1.0, 1.0, 0.99] * 5)) == []


# -- KL blow-up and reward failures -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kl", "approx_kl", "fires"),
    [
        (1.0, 0.01, False),  # at the bound: not above it
        (1.01, 0.01, True),
        (0.05, 1.5, True),
        (math.inf, 0.01, True),
        (math.nan, 0.01, False),  # absent (no reference): only approx_kl is watched
    ],
)
def test_kl_blowup_is_critical_above_either_bound(kl, approx_kl, fires):
    alerts = run(make("kl_blowup"), [rl(**{"rl/kl": kl, "rl/approx_kl": approx_kl})], start=3)
    assert alerts == ([(3, "kl_blowup", "critical")] if fires else [])


def test_a_nan_kl_is_left_to_the_nonfinite_detector():
    assert make("kl_blowup").observe({"rl/kl": math.nan, "rl/approx_kl": math.nan}, 1) == []


def test_reward_failures_warn_above_the_rate():
    assert run(make("reward_failures"), [rl(**{"rollout/reward_failure_rate": r}) for r in (0.1, 0.11)]) == [
        (1, "reward_failures", "warning")
    ]


# -- resuming -----------------------------------------------------------------------------------------
def turbulent() -> list[dict[str, float]]:
    """Every detector fires somewhere in here, on both sides of the split."""
    steps = hacked(70)
    for i, s in enumerate(steps):
        s["rl/entropy"] = 2.0 if i < 5 else (0.4 if 12 <= i < 40 else 1.5)
        s["rollout/frac_reward_zero_std"] = 1.0 if 20 <= i < 35 else 0.2
        s["rl/kl"] = 2.0 if i in (15, 50) else 0.1
        s["rollout/reward_failure_rate"] = 0.3 if i % 11 == 0 else 0.0
        s["rollout/length_reward_corr"] = 0.9 if 45 <= i < 60 else 0.1
    return steps


@pytest.mark.parametrize("name", RL_DETECTORS)
@pytest.mark.parametrize("split", [10, 30, 55])
def test_a_resumed_detector_raises_the_same_future_alerts(name, split):
    steps = turbulent()
    config = {"min_fraction": 0.3} if name == "entropy_collapse" else {}  # the sequence's collapse is mild
    straight = make(name, **config)
    first = run(straight, steps[:split])
    state = json.loads(json.dumps(straight.state_dict()))  # what state.json holds
    resumed = make(name, **config)
    resumed.load_state_dict(state)
    expected = run(straight, steps[split:], start=split)
    assert run(resumed, steps[split:], start=split) == expected
    assert first + expected  # each detector fires somewhere in the sequence


# -- policies -----------------------------------------------------------------------------------------
def alert(kind: str, severity: str = "warning") -> Alert:
    return Alert(kind, severity, 1, 0.0, 0.0, "")  # type: ignore[arg-type]


def test_rl_alert_kinds_map_to_their_default_actions():
    expected = {
        ("reward_hacking", "critical"): "rollback",
        ("reward_hacking", "warning"): "rollback",
        ("entropy_collapse", "warning"): "diversify",
        ("zero_spread", "warning"): "none",
        ("diversity_recovered", "info"): "undiversify",
        ("kl_blowup", "critical"): "rollback",
        ("reward_failures", "warning"): "none",
    }
    assert {key: decide([alert(*key)], DEFAULT_POLICIES).action for key in expected} == expected


def test_an_info_alert_never_skips_rolls_back_or_stops():
    for action in ("skip_step", "skip_and_cool", "rollback", "stop"):
        assert decide([alert("diversity_recovered", "info")], {"diversity_recovered": action}).action == "none"


def test_a_default_guard_section_validates_with_every_rl_policy():
    section = GuardSection.model_validate({"policies": dict(DEFAULT_POLICIES)})
    assert section.policies == DEFAULT_POLICIES and section.max_temperature_scale == 1.5
    custom = GuardSection.model_validate({"policies": {"entropy_collapse": "none", "kl_blowup": "stop"}})
    assert custom.policies["entropy_collapse"] == "none" and custom.policies["zero_spread"] == "none"
    with pytest.raises(ValidationError, match="unknown key 'metric'"):
        GuardSection.model_validate({"detectors": {"reward_hacking": {"metric": "rollout/reward_mean"}}})


# -- actions and knobs --------------------------------------------------------------------------------
def test_diversify_ramps_both_knobs_up_to_their_caps_and_undiversify_resets_them():
    knobs, cfg = Knobs(), GuardSection(max_temperature_scale=2.0)
    lines = [ACTIONS.get("diversify").apply(knobs, cfg) for _ in range(6)]
    assert lines[0] == "temperature_scale now 1.25, diversity now 0.1"
    assert lines[1] == "temperature_scale now 1.56, diversity now 0.2"
    assert knobs["temperature_scale"] == 2.0 and knobs["diversity"] == pytest.approx(0.5)  # capped
    assert knobs["lr_scale"] == 1.0 and knobs["clip_scale"] == 1.0
    assert ACTIONS.get("undiversify").apply(knobs, cfg) == "temperature_scale now 1, diversity now 0"
    assert knobs["temperature_scale"] == 1.0 and knobs["diversity"] == 0.0


def test_diversify_reads_its_factors_from_the_guard_config():
    knobs = Knobs()
    cfg = GuardSection(
        diversify_temperature_factor=1.5, max_temperature_scale=1.6, diversity_step=0.3, max_diversity=0.4
    )
    ACTIONS.get("diversify").apply(knobs, cfg)
    assert (knobs["temperature_scale"], knobs["diversity"]) == (1.5, pytest.approx(0.3))
    ACTIONS.get("diversify").apply(knobs, cfg)
    assert (knobs["temperature_scale"], knobs["diversity"]) == (1.6, 0.4)


def test_existing_actions_are_unchanged():
    assert {
        n: ACTIONS.get(n).strength for n in ("none", "lower_lr", "tighten_clip", "skip_step", "rollback", "stop")
    } == {
        "none": 0,
        "lower_lr": 1,
        "tighten_clip": 1,
        "skip_step": 2,
        "rollback": 3,
        "stop": 4,
    }
    knobs, cfg = Knobs(), GuardSection(lower_lr_factor=0.25)
    assert ACTIONS.get("lower_lr").apply(knobs, cfg) == "lr_scale now 0.25"
    assert ACTIONS.get("tighten_clip").apply(knobs, cfg) == "clip_scale now 0.5"
    assert all(ACTIONS.get(n).apply(knobs, cfg) is None for n in ("none", "skip_step", "rollback", "stop"))
    assert Action("cool", 1, knob="temperature", factor=0.5).apply(knobs, cfg) == "temperature now 0.5"


def test_skip_and_cool_through_a_real_guard_skips_and_turns_both_knobs():
    guard, knobs = Guard(GuardSection(policies={"grad_explosion": "skip_and_cool"})), Knobs()
    alerts = guard.observe({**SFT_METRICS, "grad/norm": 5000.0}, 1, "pre")
    decision = guard.decide(alerts)
    assert decision.action == "skip_and_cool" and decision.at_least("skip_step")  # the engine skips the update
    assert not decision.at_least("rollback")
    change = ACTIONS.get(decision.action).apply(knobs, guard.config)  # what Engine.act calls
    assert change == "lr_scale now 0.5, clip_scale now 0.5"
    assert knobs["lr_scale"] == 0.5 and knobs["clip_scale"] == 0.5


def test_a_checkpoint_without_the_new_knobs_reads_their_defaults():
    knobs = Knobs()
    knobs.load_state_dict({"lr_scale": 0.5, "clip_scale": 1.0})  # saved before the RL knobs existed
    assert knobs["temperature_scale"] == 1.0 and knobs["diversity"] == 0.0 and knobs["lr_scale"] == 0.5
    assert knobs["some_new_multiplier"] == 1.0
    assert Knobs().state_dict() == {"lr_scale": 1.0, "clip_scale": 1.0, "temperature_scale": 1.0, "diversity": 0.0}


def test_skip_and_cool_in_a_run_skips_the_exploding_step_and_cools_the_rest(tmp_path: Path):
    faults = [{"kind": "grad_spike", "at_step": 6, "magnitude": 1e6}]
    cfg = tiny_config(tmp_path / "runs", faults=faults, guard={"policies": {"grad_explosion": "skip_and_cool"}})
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "c.yaml", cfg))])
    assert result.exit_code == 0, result.output
    db = tmp_path / "runs" / "t" / "metrics.db"
    assert [s for s, _, k, _, _ in read_metrics(db) if k == "guard/skipped"] == [6]
    actions = [json.loads(e["data"]) for e in read_table(db, "events") if e["kind"] == "action"]
    assert [(a["action"], a["knobs"]["lr_scale"], a["knobs"]["clip_scale"]) for a in actions] == [
        ("skip_and_cool", 0.5, 0.5)
    ]
    final = json.loads((tmp_path / "runs" / "t" / "checkpoints" / "step-000012" / "state.json").read_text())
    assert final["knobs"]["lr_scale"] == 0.5 and final["knobs"]["clip_scale"] == 0.5


def test_an_rl_guard_leaves_out_the_detectors_that_watch_the_policy_gradient_loss():
    guard = Guard(GuardSection(), watch_loss=False)
    assert {"loss_spike", "divergence", "plateau", "oscillation"}.isdisjoint(guard.detectors)
    assert {"nonfinite", "grad_norm", "reward_hacking", "entropy_collapse"} <= set(guard.detectors)
    on_reward = GuardSection.model_validate({"detectors": {"loss_spike": {"metric": "rollout/reward_mean"}}})
    assert "loss_spike" in Guard(on_reward, watch_loss=False).detectors  # pointed at the reward, it runs


def test_under_constraints_the_loss_detectors_watch_the_task_loss():
    guard = Guard(GuardSection(), loss_key="loss/task")
    assert {guard.detectors[n].config.metric for n in ("loss_spike", "divergence", "plateau")} == {"loss/task"}
    pinned = GuardSection.model_validate({"detectors": {"loss_spike": {"metric": "rollout/reward_mean"}}})
    assert Guard(pinned, loss_key="loss/task").detectors["loss_spike"].config.metric == "rollout/reward_mean"
