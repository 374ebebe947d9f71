"""What is trained: the model, its optional LoRA adapters and its tokenizer."""

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trainguard.section import Section

# Peak LRs for training a preset from scratch, used when a stage sets none: the seed default 2e-5 suits
# fine-tuning a pretrained model and leaves a random one where it started.
PRESET_LR: dict[str, float] = {"tiny": 3e-3, "small": 1e-3, "base": 6e-4}


class LoraSection(Section):
    r: int = Field(64, ge=1, description="LoRA rank (seed default 64).")
    alpha: float = Field(
        128, gt=0, description="LoRA scaling numerator: updates scale by alpha / r (seed default 128)."
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input (seed default 0.05).")
    target_modules: list[str] | None = Field(
        None,
        min_length=1,
        description="Module names that get adapters; default: every linear layer but the output head, whatever "
        "the architecture calls them (peft's all-linear: q/k/v/o and MLP projections on Llama, c_attn/c_proj/c_fc "
        "on GPT-2).",
    )


class ModelSection(Section):
    preset: Literal["tiny", "small", "base"] | None = Field(
        None,
        description="Llama-style model built from a config with random init: tiny ~1M, small ~10M, base ~50M. "
        "Stages that set no LR train it at 3e-3, 1e-3, 6e-4 (not the fine-tuning 2e-5), and those that set no "
        "warm-up warm up for 10% of max_steps (at most 100).",
    )
    path: str | None = Field(None, description="Local folder of a Hugging Face causal LM (loaded offline).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of the weights.")
    lora: LoraSection | None = Field(
        None, description="Train LoRA adapters (peft) instead of all weights; a stage may override it."
    )

    @field_validator("path")
    @classmethod
    def _local_model(cls, path: str | None) -> str | None:
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ValueError(f"{path!r} is not a local Hugging Face model folder (no config.json)")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.preset is None) == (self.path is None):
            raise ValueError("set exactly one of 'preset' (tiny, small, base) or 'path'")
        return self


class TokenizerSection(Section):
    path: str | None = Field(
        None, description="Local tokenizer folder; default: the model folder's, or the byte-level one for presets."
    )
    max_length: int = Field(
        256, ge=8, description="Longest tokenised example; longer prompts lose their left end (counted)."
    )
    chat_template: str | None = Field(
        None, description="A Jinja chat template for a tokenizer without one (saved with the exported tokenizer)."
    )
