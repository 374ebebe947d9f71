"""A PPO stage on the engine: a value head trained beside the policy, ppo_epochs x minibatches inner updates
per rollout batch, an early stop at target_kl, the KL penalty to a frozen reference, and exact resume."""

import pytest
import torch
from safetensors.torch import load_file

from rl_helpers import resumed_after_crash, rl_config
from trainguard import api
from trainguard.errors import ConfigError
from trainguard.track.store import read_metrics


def series(run, key):
    return [v for _, _, k, v, _ in read_metrics(run.path / "metrics.db") if k == key]


def test_ppo_runs_epochs_times_minibatches_and_trains_its_value_head(tmp_path):
    objective = {"name": "ppo", "ppo_epochs": 3, "num_minibatches": 2, "kl_coef": 0.05}
    cfg = rl_config(tmp_path, objective, steps=4, stage={"reference": "copy"})
    run = api.run(cfg, overwrite=True)
    assert series(run, "opt/inner_updates") == [6.0] * 4
    for key in ("rl/value_loss", "rl/explained_variance", "rl/kl", "rl/ratio_var", "eval/accuracy"):
        assert series(run, key), key
    ratio = series(run, "rl/ratio_mean")
    assert all(abs(r - 1) < 0.5 for r in ratio) and any(r != 1.0 for r in ratio)  # later passes move the ratio
    kl = series(run, "rl/kl")
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[-1] != 0.0  # the reference is the start, then drifts
    value_head = load_file(run.final / "heads" / "value_head" / "model.safetensors")
    assert value_head and all(torch.isfinite(t).all() for t in value_head.values())


def test_target_kl_stops_the_passes_early(tmp_path):
    objective = {"name": "ppo", "ppo_epochs": 4, "num_minibatches": 2, "target_kl": 1e-9}
    run = api.run(rl_config(tmp_path, objective, steps=2), overwrite=True)
    updates = series(run, "opt/inner_updates")
    assert updates and all(1 <= u < 8 for u in updates)  # the first update already moves the policy past 1e-9


def test_a_kl_coefficient_without_a_reference_fails_before_the_first_step(tmp_path):
    with pytest.raises(ConfigError, match="reference: copy"):
        api.run(rl_config(tmp_path, {"name": "ppo", "kl_coef": 0.1}, steps=2), overwrite=True)


def test_a_ppo_crash_after_a_checkpoint_resumes_to_the_same_weights_and_value_head(tmp_path):
    straight = api.run(rl_config(tmp_path, {"name": "ppo", "num_minibatches": 2}), overwrite=True)
    resumed = resumed_after_crash(straight, tmp_path)
    for name in ("model.safetensors", "heads/value_head/model.safetensors"):
        a, b = load_file(straight.final / name), load_file(resumed.final / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_a_reward_model_path_that_does_not_exist_fails_before_the_first_step(tmp_path):
    source, stage = {"rewards": [{"name": "reward_model"}]}, {"reward_model": "/nowhere/rm"}
    cfg = rl_config(tmp_path, {"name": "ppo"}, steps=2, source=source, stage=stage)
    with pytest.raises(ConfigError, match="/nowhere/rm"):
        api.run(cfg, overwrite=True)
    assert not (tmp_path / "runs" / "t" / "metrics.db").exists()
