"""The constraints plug-in in a stage: an RL constraint folds its cost into the rewards, an SFT constraint adds a
surrogate whose gradient reaches the logits, measurements move λ, and the numbers reach the store."""

import json

import pytest
import torch
from pydantic import ValidationError

from rl_helpers import LOWERCASE, format_constraint, resumed_after_crash, rl_config
from trainguard import api
from trainguard.constraints.plugin import ConstraintsConfig, ConstraintsPlugin
from trainguard.data.batches import TokenBatch
from trainguard.data.rollouts import RolloutBatch
from trainguard.errors import ConfigError
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives.base import LossOutput, ObjectiveContext
from trainguard.rl.advantages import lagrangian_rewards

LENGTH = {"rewards": [{"name": "length", "cap": 6}]}  # reward spread from a random policy: it learns


def plugin(**over):
    cfg = ConstraintsConfig.model_validate(
        {"constraints": [{"name": "fmt", "target": 0.05, "dual_lr": 0.5, "measure": LOWERCASE}], **over}
    )
    return ConstraintsPlugin(cfg, ObjectiveContext(model=torch.nn.Linear(1, 1), tokenizer=byte_tokenizer()))


def rollouts(texts, rewards):
    n = len(texts)
    ones = torch.ones(n, 2, dtype=torch.long)
    return RolloutBatch(ones, ones, ones, torch.tensor(rewards), group_size=n, texts=texts)


def test_an_rl_constraint_charges_each_violating_response_and_moves_lambda():
    p = plugin()
    p.dual.controllers["fmt"].lam = 1.0
    batch = rollouts(["abc", "ABC", "abcdefghijk", "xyz"], [1.0, 1.0, 0.5, 0.0])
    p.prepare(batch)
    assert batch.extras["costs"].tolist() == [[0.0], [1.0], [1.0], [0.0]]
    assert batch.extras["cost_weights"].tolist() == [[1.0]] * 4
    charged = lagrangian_rewards(batch.rewards, batch.extras["costs"], batch.extras["cost_weights"])
    assert charged.tolist() == pytest.approx([0.5, 0.0, -0.25, 0.0])  # (r - 1 * v) / (1 + 1), GRPO's rewards
    metrics = p.after_step({})
    assert metrics["constraint/fmt/value"] == 0.5
    assert metrics["constraint/fmt/lambda"] == pytest.approx(1.0 + 0.5 * (0.5 - 0.05))  # ga: λ + η (v - c)


def test_a_constraint_below_its_target_drives_lambda_to_zero():
    p = plugin()
    p.dual.controllers["fmt"].lam = 0.2
    for _ in range(10):  # each step: λ − 0.5 · (0 − 0.05) → 0 after 8
        p.prepare(rollouts(["abc", "def"], [0.0, 0.0]))
        last = p.after_step({})
    assert last["constraint/fmt/lambda"] == 0.0 and last["constraint/fmt/satisfaction"] == 1.0


def test_an_sft_constraint_adds_a_surrogate_whose_gradient_reaches_the_logits():
    p = plugin()
    p.dual.controllers["fmt"].lam = 2.0
    ids = torch.tensor([[257, 97, 98, 99, 258]])  # <bos> "abc" <eos>: the surrogate reads the bytes, not <eos>
    batch = TokenBatch(
        input_ids=ids,
        token_mask=torch.ones_like(ids, dtype=torch.bool),
        completion_mask=torch.tensor([[False, True, True, True, True]]),
    )
    logits = torch.zeros(1, 5, 259, requires_grad=True)
    terms = p.terms(batch, LossOutput({"task": torch.zeros(())}, extras={"logits": logits, "units": 3}))
    (term,) = terms.values()
    assert term.item() > 0  # a uniform model puts mass on bytes that break [a-z]{1,8}
    term.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_an_sft_format_constraint_refuses_a_packed_batch():
    p = plugin()
    p.dual.controllers["fmt"].lam = 2.0
    ids = torch.tensor([[257, 97, 258, 257, 98, 258]])  # two examples packed in one row
    batch = TokenBatch(
        input_ids=ids,
        token_mask=torch.ones_like(ids, dtype=torch.bool),
        completion_mask=torch.tensor([[False, True, True, False, True, True]]),
        position_ids=torch.tensor([[0, 1, 2, 0, 1, 2]]),
    )
    out = LossOutput({"task": torch.zeros(())}, extras={"logits": torch.zeros(1, 6, 259), "units": 4})
    with pytest.raises(ConfigError, match=r"set source\.packing: false"):
        p.terms(batch, out)


def test_bad_configs_name_the_field():
    with pytest.raises(ValidationError, match="unknown constraint 'fmat'"):
        plugin(constraints=[{"name": "fmt", "target": 0.05, "measure": {"name": "fmat"}}])
    with pytest.raises(ValidationError, match="target"):
        plugin(constraints=[{"name": "fmt", "target": -0.1, "measure": LOWERCASE}])


def test_a_constrained_grpo_stage_logs_lambda_and_resumes_its_state(tmp_path):
    cfg = rl_config(tmp_path, {"name": "grpo"}, steps=4, source=LENGTH, stage=format_constraint(controller="pid"))
    run = api.run(cfg, overwrite=True)
    lam = [r["value"] for r in api.metrics(run) if r["key"] == "constraint/fmt/lambda"]
    value = [r["value"] for r in api.metrics(run) if r["key"] == "constraint/fmt/value"]
    assert len(lam) == 4 and len(value) == 4 and lam[-1] > 0  # a random policy violates: λ rises
    state = json.loads((run.path / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["plugin/constraints"]["dual"]["controllers"]["fmt"]["lam"] == pytest.approx(lam[-1])


def test_ppo_learns_a_cost_critic_per_constraint_and_exports_it(tmp_path):
    stage = format_constraint(dual_lr=0.01, lambda_init=1.0)
    cfg = rl_config(tmp_path, {"name": "ppo", "num_minibatches": 2}, steps=3, source=LENGTH, stage=stage)
    run = api.run(cfg, overwrite=True)
    head = run.final / "heads" / "cost_critic_fmt" / "model.safetensors"
    assert head.is_file()
    lam = [r["value"] for r in api.metrics(run) if r["key"] == "constraint/fmt/lambda"]
    assert len(lam) == 3 and lam[0] > 1.0  # a random policy's answers break the format: λ rises from 1


def test_an_adapter_l1_constraint_is_measured_on_the_weights_and_pulls_them_down():
    model = torch.nn.Module()
    model.lora_A = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    model.base = torch.nn.Parameter(torch.tensor([5.0]))
    cfg = ConstraintsConfig.model_validate(
        {"constraints": [{"name": "l1", "target": 1.0, "dual_lr": 0.5, "measure": {"name": "param_l1"}}]}
    )
    p = ConstraintsPlugin(cfg, ObjectiveContext(model=model, tokenizer=None))
    assert cfg.cost_names() == []  # nothing per response: RL batches carry no cost for it
    metrics = p.after_step({})
    assert metrics["constraint/l1/value"] == 3.0 and metrics["constraint/l1/lambda"] == 1.0  # 0 + 0.5 * (3 - 1)
    (term,) = p.terms(None, LossOutput({"task": torch.zeros(())}, extras={"units": 2})).values()
    term.backward()
    assert model.lora_A.grad.tolist() == [2.0, -2.0] and model.base.grad is None  # λ · units · sign, adapter only


def test_an_sft_stage_measures_greedy_answers_every_few_steps_and_adds_its_surrogate(tmp_path):
    from helpers import tiny_config, write_config

    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["max_steps"] = 6
    cfg["stages"][0]["plugins"] = [
        {
            "name": "constraints",
            "task": "reverse",
            "prompts": 8,
            "max_new_tokens": 8,
            "measure_every": 2,
            "constraints": [{"name": "fmt", "target": 0.05, "dual_lr": 1.0, "measure": LOWERCASE}],
        }
    ]
    run = api.run(write_config(tmp_path / "sft.yaml", cfg), overwrite=True)
    rows = api.metrics(run)
    updates = [r["value"] for r in rows if r["key"] == "constraint/fmt/updates"]
    assert updates == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]  # measured at steps 2, 4 and 6
    lam = [r["value"] for r in rows if r["key"] == "constraint/fmt/lambda"]
    assert lam[1] > 0  # a barely trained model's greedy answers break the format: λ rises
    assert any(r["key"] == "loss/constraint_fmt" and r["value"] > 0 for r in rows)  # the surrogate is in the loss


def test_a_constrained_run_resumed_after_a_crash_ends_with_the_same_lambda_and_weights(tmp_path):

    from safetensors.torch import load_file

    cfg = rl_config(tmp_path, {"name": "grpo"}, steps=4, source=LENGTH, stage=format_constraint(controller="pid"))
    straight = api.run(cfg, overwrite=True)
    resumed = resumed_after_crash(straight, tmp_path)
    lam = [[r["value"] for r in api.metrics(run) if r["key"] == "constraint/fmt/lambda"] for run in (straight, resumed)]
    assert lam[0] == lam[1] and len(lam[0]) == 4
    a, b = load_file(straight.final / "model.safetensors"), load_file(resumed.final / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
