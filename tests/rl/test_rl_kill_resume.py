"""GRPO and PPO runs killed with SIGKILL inside the RL stage and resumed end with bit-identical weights (the
value head's too) and the same metrics as runs never killed: rollout RNG, policy, value head, optimizer,
reference and detector state all come back."""

import pytest
import torch
from safetensors.torch import load_file

from helpers import comparable, kill_when, max_step, start, tiny_config, write_config
from rl_helpers import rl_stage

SFT_STEPS, RL_STEPS = 6, 10


def two_stages(objective):
    sft = tiny_config(".")["stages"][0] | {"max_steps": SFT_STEPS, "save_every": 3}
    rl = rl_stage(objective, RL_STEPS) | {"save_every": 3, "eval_every": 5, "reference": "copy"}
    return [sft, rl]


@pytest.mark.parametrize("objective", [{"name": "grpo", "beta": 0.05}, {"name": "ppo", "num_minibatches": 2}])
def test_sigkill_inside_the_rl_stage_then_resume_is_exact(tmp_path, objective):
    stages = two_stages(objective)
    ref_cfg = write_config(tmp_path / "ref.yaml", tiny_config(tmp_path / "ref", stages=stages))
    proc = start(ref_cfg)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()

    cfg = write_config(tmp_path / "killed.yaml", tiny_config(tmp_path / "killed", stages=stages))
    run, ref = tmp_path / "killed" / "t", tmp_path / "ref" / "t"
    for target in (SFT_STEPS + 4, SFT_STEPS + 8):  # inside the RL stage, after a checkpoint, mid-interval
        assert kill_when(start(cfg), lambda t=target: max_step(run / "metrics.db") >= t), "the run ended first"
    proc = start(cfg)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()

    files = ["model.safetensors"] + (["heads/value_head/model.safetensors"] if objective["name"] == "ppo" else [])
    for name in files:
        want, got = load_file(ref / "final" / name), load_file(run / "final" / name)
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), name
    assert comparable(run) == comparable(ref)
