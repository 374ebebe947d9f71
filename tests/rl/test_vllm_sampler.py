"""What of `source.sampler: vllm` runs without a GPU: the weights pushed into the engine are a merged export's,
name for name and bit for bit (LoRA deltas folded in aside, the training weights untouched), and a run that asks
for vLLM where it cannot be had stops before its first step, saying what is missing."""

import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from helpers import hf_folder, tiny_config, write_config
from trainguard import api
from trainguard.config import LoraSection
from trainguard.errors import ConfigError
from trainguard.models.loading import add_lora, merged_copy
from trainguard.rl.vllm_sampler import hf_weights, require_vllm


def trained_adapters(model: torch.nn.Module) -> torch.nn.Module:
    """LoRA on `model` with nonzero B matrices, so every adapter changes its layer."""
    torch.manual_seed(0)
    lora = add_lora(model, LoraSection(r=4, dropout=0.0))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return lora


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_the_pushed_weights_are_the_merged_exports(tmp_path, arch):
    model = AutoModelForCausalLM.from_pretrained(hf_folder(tmp_path / arch, arch))
    plain = dict(hf_weights(model))
    assert plain.keys() == model.state_dict().keys()
    lora = trained_adapters(model)
    before = {k: v.clone() for k, v in lora.state_dict().items()}
    pushed = dict(hf_weights(lora))
    merged = merged_copy(lora).state_dict()
    assert pushed.keys() == merged.keys() == plain.keys()  # the transformers checkpoint's names
    assert all(torch.equal(pushed[k], merged[k]) for k in merged)
    changed = [k for k in merged if not torch.equal(pushed[k], plain[k])]
    assert len(changed) >= 4  # the adapted layers moved (not a copy of the base)
    assert all(torch.equal(v, before[k]) for k, v in lora.state_dict().items())  # training weights untouched


def test_without_a_gpu_or_vllm_the_error_says_what_is_missing(monkeypatch):
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"source\.sampler: vllm needs a CUDA GPU"):
            require_vllm()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now fails
    with pytest.raises(ConfigError, match=r"pip install 'trainguard\[vllm\]'"):
        require_vllm()


def test_a_run_that_asks_for_vllm_here_stops_before_its_first_step(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    stage = {
        "name": "rl",
        "objective": {"name": "grpo"},
        "source": {"name": "rollouts", "task": "reverse", "sampler": "vllm", "group_size": 2, "prompts_per_step": 2},
        "max_steps": 2,
        "batch_size": 4,
    }
    cfg = tiny_config(tmp_path / "runs", stages=[stage])
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        api.run(write_config(tmp_path / "run.yaml", cfg))
    assert not list((tmp_path / "runs").rglob("step-*"))
