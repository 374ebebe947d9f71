"""A GRPO stage on the engine: rollouts from the live policy, verifier rewards, group advantages; its numbers
are logged, and a crash after a checkpoint resumes to the same weights (the sampling is seeded by step)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from rl_helpers import resumed_after_crash, rl_config
from trainguard import api
from trainguard.errors import ConfigError


def grpo_run(tmp_path, steps=4, **objective):
    return rl_config(tmp_path, {"name": "grpo", **objective}, steps)


def weights(folder):
    return load_file(folder / "model.safetensors")


def test_a_grpo_stage_logs_its_rollout_numbers(tmp_path):
    result = api.run(grpo_run(tmp_path), overwrite=True)
    rows = api.metrics(result)
    keys = {r["key"] for r in rows}
    for key in (
        "rollout/reward_mean",
        "rollout/frac_reward_zero_std",
        "rl/entropy",
        "rl/clip_frac",
        "rollout/truncated_ratio",
        "rollout/response_length_mean",
        "loss/task",
    ):
        assert key in keys, key
    zero = [r["value"] for r in rows if r["key"] == "rollout/frac_reward_zero_std"]
    assert len(zero) == 4 and all(0.0 <= v <= 1.0 for v in zero)
    entropy = [r["value"] for r in rows if r["key"] == "rl/entropy"]
    assert all(0.0 < v < 6.0 for v in entropy)  # a random 259-way model starts near log 259 = 5.56


def test_a_crash_after_a_checkpoint_resumes_to_the_same_weights(tmp_path):
    straight = api.run(grpo_run(tmp_path), overwrite=True)
    resumed = resumed_after_crash(straight, tmp_path)
    a, b = weights(straight.final), weights(resumed.final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rollback_and_skip_work_inside_an_rl_stage(tmp_path):
    """A NaN loss at RL step 5 rolls back to the last healthy checkpoint and the prompts drawn since are skipped
    (2 per step); a gradient spike at step 7 is skipped and cools the LR and clip (skip_and_cool). The length
    proxy gives a random policy reward spread, hence gradients to spike."""
    faults = [{"kind": "nan_loss", "at_step": 5}, {"kind": "grad_spike", "at_step": 7, "magnitude": 1e6}]
    guard = {"policies": {"grad_explosion": "skip_and_cool"}}
    source = {"rewards": [{"name": "length", "cap": 6}]}
    cfg = rl_config(tmp_path, {"name": "grpo"}, steps=8, source=source, faults=faults, guard=guard)
    run = api.run(cfg, overwrite=True)
    actions = [e for e in api.events(run) if e.get("kind") == "action"]
    rollback = next(e for e in actions if "rollback" in e["message"])
    data = rollback["data"] if isinstance(rollback["data"], dict) else json.loads(rollback["data"])
    assert data["onset"] == 5 and data["target"] == 4
    assert data["skipped_samples"] == 2 * (5 - data["target"])
    cool = next(e for e in actions if e["message"].startswith("skip_and_cool"))
    assert "lr_scale now 0.5" in cool["message"] and "clip_scale now 0.5" in cool["message"]
    skipped = [r["step"] for r in api.metrics(run) if r["key"] == "guard/skipped"]
    assert skipped == [7]
    assert run.final.is_dir()


def test_a_lora_policy_measures_its_kl_against_itself_with_the_adapter_off(tmp_path):
    source = {"rewards": [{"name": "length", "cap": 6}]}  # reward spread from the start, so the adapter moves
    cfg = rl_config(
        tmp_path,
        {"name": "grpo", "beta": 0.1},
        steps=4,
        source=source,
        model={"preset": "tiny", "lora": {"r": 4, "dropout": 0.0}},
        stage={"reference": "adapter"},
    )
    run = api.run(cfg, overwrite=True)
    kl = [r["value"] for r in api.metrics(run) if r["key"] == "rl/kl"]
    assert kl[0] == pytest.approx(0.0, abs=1e-7) and kl[-1] > 1e-6  # the base is the start; the adapter drifts


def test_packed_scoring_trains_as_the_padded_forward_does(tmp_path):
    """The same rollouts (HF generate, same seeds) scored packed or padded: the same losses and entropies, step
    by step, to float rounding."""
    source = {"rewards": [{"name": "length", "cap": 6}]}  # reward spread from the start: gradients at every step
    runs = [
        api.run(rl_config(tmp_path / str(p), {"name": "grpo", "packed": p}, steps=3, source=source), overwrite=True)
        for p in (False, True)
    ]
    keys = ("loss/task", "rl/entropy", "grad/norm")  # at one update per batch the loss is -A whatever the forward
    curves = [[(r["step"], r["key"], r["value"]) for r in api.metrics(run) if r["key"] in keys] for run in runs]
    assert len(curves[0]) == 9 and [c[:2] for c in curves[0]] == [c[:2] for c in curves[1]]
    assert all(abs(a[2] - b[2]) < 1e-4 * max(1.0, abs(a[2])) for a, b in zip(*curves, strict=True))
    a, b = (weights(run.final) for run in runs)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_packed_scoring_refuses_a_model_that_cannot_take_its_mask(tmp_path):
    cfg = rl_config(tmp_path, {"name": "grpo", "packed": True}, steps=1, model={"preset": "bdh-small"})
    with pytest.raises(ConfigError, match=r"objective\.packed: .*spiking"):
        api.run(cfg, overwrite=True)


def test_a_lean_grpo_run_resumes_to_the_same_weights(tmp_path):
    """Grouped sampling and packed scoring keep exact resume: the sampling is seeded by step as before."""
    objective = {"name": "grpo", "packed": True}
    straight = api.run(rl_config(tmp_path, objective, source={"sampler": "grouped"}), overwrite=True)
    resumed = resumed_after_crash(straight, tmp_path)
    a, b = weights(straight.final), weights(resumed.final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
