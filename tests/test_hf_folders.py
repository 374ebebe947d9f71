"""Any local Hugging Face causal LM folder trains through SFT, a reward model and GRPO: GPT-2 (Conv1D layers),
Llama and Qwen2 (biased q/k/v projections, tied embeddings), each exported as a folder its own class loads."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from helpers import hf_folder, tiny_config, write_config
from trainguard import api
from trainguard.data.collect import collect
from trainguard.reward import load_reward_model
from trainguard.tasks import build_task


@pytest.mark.slow
@pytest.mark.parametrize(
    ("arch", "cls"), [("llama", "LlamaForCausalLM"), ("qwen2", "Qwen2ForCausalLM"), ("gpt2", "GPT2LMHeadModel")]
)
def test_a_local_folder_trains_through_sft_reward_and_grpo(tmp_path, arch, cls):
    pairs = tmp_path / "pairs.jsonl"
    collect([build_task("reverse", {"min_len": 3, "max_len": 5})], 80, pairs, pairs=True)
    common = {"batch_size": 4, "optimizer": {"lr": 1e-3}, "eval_every": 4, "save_every": 4}
    stages = [
        {"name": "sft", "objective": "sft", "max_steps": 4, **common},
        {"name": "rm", "objective": "reward", "max_steps": 4, **common,
         "source": {"name": "pairs", "data": {"sources": [{"path": str(pairs)}], "eval_fraction": 0.2}}},
        {"name": "rl", "objective": "grpo", "max_steps": 2, **common,
         "source": {"name": "rollouts", "task": "reverse", "group_size": 2, "prompts_per_step": 2,
                    "max_new_tokens": 6, "eval_prompts": 4}},
    ]  # fmt: skip
    model = {"preset": None, "path": str(hf_folder(tmp_path / arch, arch))}
    cfg = tiny_config(tmp_path / "runs", model=model, stages=stages)
    run = api.run(write_config(tmp_path / "run.yaml", cfg), overwrite=True)
    rows = api.metrics(run)
    for stage in ("sft", "rm", "rl"):
        losses = [r["value"] for r in rows if r["stage"] == stage and r["key"] == "loss/train"]
        assert losses and all(math.isfinite(v) for v in losses), stage
    exported = AutoModelForCausalLM.from_pretrained(run.final)
    assert type(exported).__name__ == cls
    out = exported.generate(torch.tensor([[1, 100, 101]]), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)
    reward, tok = load_reward_model(run.path / "exports" / "rm")
    assert torch.isfinite(reward.get_rewards(["reverse: abc\n"], ["cba"], tok)).all()
