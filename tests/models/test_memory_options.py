"""Options that trade compute for memory or speed: gradient checkpointing and torch.compile train the same losses
as the plain model; 8- and 4-bit loading says what it needs on a machine without a GPU."""

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from helpers import gpt2_folder, tiny_config
from trainguard import api
from trainguard.errors import ConfigError
from trainguard.models.config import LoraSection, ModelSection
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer

STAGE = {"name": "sft", "objective": "sft", "max_steps": 4, "batch_size": 8, "optimizer": {"lr": 3e-3}}


def losses(result: api.RunResult) -> list[float]:
    return [row["value"] for row in api.metrics(result, "loss/train")]


def test_gradient_checkpointing_recomputes_to_the_same_losses(tmp_path):
    plain = api.run(tiny_config(tmp_path / "a", stages=[STAGE]))
    checkpointed = api.run(tiny_config(tmp_path / "b", stages=[STAGE], model={"gradient_checkpointing": True}))
    assert len(losses(plain)) == 4
    assert losses(checkpointed) == pytest.approx(losses(plain), abs=1e-6)


def test_gradient_checkpointing_is_on_in_the_built_model():
    def checkpointing(model) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in model.modules())

    assert checkpointing(build_model(ModelSection(preset="tiny", gradient_checkpointing=True), byte_tokenizer(), 32, 0))
    assert not checkpointing(build_model(ModelSection(preset="tiny"), byte_tokenizer(), 32, 0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error is for machines without a GPU")
def test_quantized_loading_without_a_gpu_names_the_field(tmp_path):
    section = ModelSection(path=str(gpt2_folder(tmp_path / "gpt2")), quantize="4bit", lora=LoraSection())
    with pytest.raises(ConfigError, match=r"model.quantize='4bit' needs a CUDA GPU \(bitsandbytes\)"):
        build_model(section, byte_tokenizer(), 32, 0)


def test_quantized_weights_must_train_adapters(tmp_path):
    folder = str(gpt2_folder(tmp_path / "gpt2"))
    with pytest.raises(ValidationError, match=r"model\.quantize='8bit' needs model\.lora"):
        ModelSection(path=folder, quantize="8bit")
    with pytest.raises(ValidationError, match=r"needs model\.path"):
        ModelSection(preset="tiny", quantize="4bit", lora=LoraSection())


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_plain_names(tmp_path):
    eager = api.run(tiny_config(tmp_path / "a", stages=[STAGE]))
    compiled = api.run(tiny_config(tmp_path / "b", stages=[STAGE], run={"compile": True}))
    assert losses(compiled) == pytest.approx(losses(eager), abs=1e-5)
    a, b = (load_file(r.path / "final" / "model.safetensors") for r in (eager, compiled))
    assert a.keys() == b.keys()  # no torch.compile wrapper names (_orig_mod.) in exports
    checkpoint = sorted((compiled.path / "checkpoints").glob("step-*"))[-1]
    assert not any("_orig_mod" in k for k in load_file(checkpoint / "model.safetensors"))
