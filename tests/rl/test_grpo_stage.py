"""A GRPO stage on the engine: rollouts from the live policy, verifier rewards, group advantages; its numbers
are logged, and a crash after a checkpoint resumes to the same weights (the sampling is seeded by step)."""

import json
import shutil

import torch
from rl_helpers import rl_config
from safetensors.torch import load_file

from trainguard import api


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
    crashed = tmp_path / "crashed"
    shutil.copytree(straight.path, crashed)
    manifest = json.loads((crashed / "manifest.json").read_text())
    (crashed / "manifest.json").write_text(json.dumps(manifest | {"status": "running"}))
    for later in ("checkpoints/step-000004", "final"):
        shutil.rmtree(crashed / later)
    resumed = api.resume(crashed)
    a, b = weights(straight.final), weights(resumed.final)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
