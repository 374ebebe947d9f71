"""A safe-rlhf cost model trained as a stage (ranking + sign terms), then read by a safety constraint in RL."""

import json
import math

import pytest
import torch

from helpers import tiny_config, write_config
from rl_helpers import rl_stage
from trainguard import api
from trainguard.objectives.cost import cost_terms


def softplus(x):
    return math.log1p(math.exp(x))


def test_the_cost_loss_ranks_the_less_safe_side_higher_and_signs_by_the_labels():
    costs = torch.tensor([0.0, 1.0, 2.0, -1.0])  # safer side of two pairs, then their less safe sides
    signs = torch.tensor([-1.0, -1.0, 1.0, 1.0])  # safer sides are safe, the others unsafe
    ranking, sign_loss, metrics = cost_terms(costs, signs)
    assert ranking.item() == pytest.approx(softplus(-2.0) + softplus(2.0))  # -log σ(2 - 0) - log σ(-1 - 1)
    assert sign_loss.item() == pytest.approx(softplus(0.0) + softplus(1.0) + softplus(-2.0) + softplus(1.0))
    assert metrics["accuracy"].item() == 0.5 and metrics["sign_accuracy"].item() == 0.25
    _, unlabelled, metrics = cost_terms(costs, torch.zeros(4))
    assert unlabelled.item() == 0.0 and "sign_accuracy" not in metrics


def safety_rows(n):
    words = ["abc", "dog", "sun", "tree", "moon", "lake", "bird", "fish"]
    rows = []
    for i in range(n):
        w = words[i % len(words)]
        rows.append(
            {
                "prompt": f"reverse: {w}\n",
                "response_chosen": w[::-1],
                "response_rejected": f"KILL {w.upper()}",
                "chosen_safe": True,
                "rejected_safe": False,
            }
        )
    return rows


def test_a_cost_stage_learns_the_sign_and_a_safety_constraint_reads_it(tmp_path):
    data = tmp_path / "safety.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in safety_rows(160)))
    cost = {
        "name": "cost",
        "objective": "cost",
        "source": {"name": "pairs", "data": {"sources": [{"path": str(data)}]}},
        "init": "base",
        "max_steps": 30,
        "batch_size": 16,
        "optimizer": {"lr": 3e-3},
        "eval_every": 30,
    }
    constraint = {
        "name": "safe",
        "target": 0.05,
        "dual_lr": 0.5,
        "measure": {"name": "safety", "source": "cost_model", "threshold": 0.0},
    }
    plugins = [{"name": "constraints", "constraints": [constraint]}]
    grpo = rl_stage({"name": "grpo"}, 3) | {"name": "grpo", "init": "base", "cost_model": "cost", "plugins": plugins}
    cfg = tiny_config(tmp_path / "runs", stages=[cost, grpo])
    run = api.run(write_config(tmp_path / "run.yaml", cfg), overwrite=True)
    rows = api.metrics(run)
    sign = [r["value"] for r in rows if r["key"] == "cost/eval_sign_accuracy"]
    assert sign and sign[-1] > 0.9  # cost > 0 exactly on the unsafe answers of held-out pairs
    assert (run.path / "exports" / "cost" / "heads" / "cost" / "model.safetensors").is_file()
    value = [r["value"] for r in rows if r["key"] == "constraint/safe/value"]
    assert len(value) == 3 and all(0.0 <= v <= 1.0 for v in value)


def test_a_cost_model_constraint_without_a_cost_model_fails_before_the_first_step(tmp_path):
    from trainguard.errors import ConfigError

    constraint = {"name": "safe", "target": 0.05, "measure": {"name": "safety", "source": "cost_model"}}
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["plugins"] = [{"name": "constraints", "constraints": [constraint]}]
    with pytest.raises(ConfigError, match="cost_model"):
        api.run(write_config(tmp_path / "run.yaml", cfg), overwrite=True)
