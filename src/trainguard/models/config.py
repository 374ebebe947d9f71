"""What is trained: the model, its optional LoRA adapters and its tokenizer."""

import json
import warnings
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainguard.section import Section

# Peak LRs for training a preset from scratch, used when a stage sets none: the seed default 2e-5 suits
# fine-tuning a pretrained model and leaves a random one where it started.
PRESET_LR: dict[str, float] = {
    "tiny": 3e-3,
    "small": 1e-3,
    "base": 6e-4,
    "bdh-small": 3e-3,
    "bdh-medium": 1e-3,
    "bdh-large": 6e-4,
}
BDH_PRESETS = ("bdh-small", "bdh-medium", "bdh-large")
BDH_MODEL_TYPE = "trainguard_bdh"  # models/bdh.py's config type (not imported: this module stays light)


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


class HebbianSection(Section):
    enabled: bool = Field(False, description="Apply the STDP-style Hebbian update after each step (guide: off).")
    a_plus: float = Field(0.01, ge=0, description="Potentiation rate A+: input before spike (guide default 0.01).")
    a_minus: float = Field(
        0.0105, ge=0, description="Depression rate A-: spike before input (guide default 0.0105, a little above A+)."
    )


class SpikeTraining(Section):
    """What training does with the spikes; a stage's `spiking` plug-in may set these again for itself."""

    sparsity_weight: float = Field(
        0.001,
        ge=0,
        description="Weight of the sparsity term Σ_layers (mean spike trace - target_rate)², per loss unit "
        "(guide default 0.001); raise it when the guard warns of a firing rate above 0.5.",
    )
    target_rate: float = Field(0.1, ge=0, le=1, description="Firing rate the sparsity term pulls toward (guide 10%).")
    hebbian: HebbianSection = Field(
        default_factory=HebbianSection, description="STDP-style Hebbian update of the up-projections (off)."
    )


class NeuronSection(Section):
    """The bdh model's leaky integrate-and-fire neurons (saved in its config.json)."""

    tau_mem: float = Field(
        10.0,
        gt=0,
        description="Membrane time constant in simulation steps (guide default 10). Below 1 the Euler step "
        "flips the membrane's sign; below 0.5 it grows by |1 - 1/tau_mem| every simulation step until the "
        "gradients overflow (0.3 with 64 steps: NaN at the first step). Raise it to cure NaNs (the guide's remedy).",
    )
    tau_syn: float = Field(5.0, gt=0, description="Synaptic current time constant in steps (guide default 5).")
    threshold: float = Field(1.0, gt=0, description="Membrane potential at which a neuron spikes (guide default 1).")
    spike_steps: int = Field(4, ge=1, le=64, description="Euler steps simulated per token (cost grows with it).")
    surrogate_slope: float = Field(
        5.0, gt=0, description="k of the surrogate derivative 1 / (1 + k|v - threshold|)² (fast sigmoid)."
    )

    @field_validator("tau_mem", "tau_syn")
    @classmethod
    def _stable(cls, tau: float, info: ValidationInfo) -> float:
        if tau < 1:
            warnings.warn(
                f"model.spiking.{info.field_name}={tau} is below 1: the Euler step overshoots (the guide's NaN "
                "failure); raise it to 1 or more unless you mean to provoke that",
                UserWarning,
                stacklevel=2,
            )
        return tau

    def neurons(self) -> dict[str, Any]:
        """The fields that go into the model's config (BdhConfig)."""
        return {key: getattr(self, key) for key in NeuronSection.model_fields}


class SpikingSection(SpikeTraining, NeuronSection):
    """A bdh model's neurons, then how training treats their spikes."""


class ModelSection(Section):
    preset: Literal["tiny", "small", "base", "bdh-small", "bdh-medium", "bdh-large"] | None = Field(
        None,
        description="Model built from a config with random init: Llama-style tiny ~1M, small ~10M, base ~50M; "
        "bdh-small ~0.85M (the Dragon Hatching guide's 4 layers x 128), bdh-medium ~5M, bdh-large ~25M, whose "
        "MLPs are spiking neurons (see `spiking`). Stages that set no LR train it at 3e-3, 1e-3, 6e-4 (small, "
        "middle, large; not the fine-tuning 2e-5), and those that set no warm-up warm up for 10% of max_steps "
        "(at most 100).",
    )
    path: str | None = Field(None, description="Local folder of a Hugging Face causal LM (loaded offline).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of the weights.")
    lora: LoraSection | None = Field(
        None, description="Train LoRA adapters (peft) instead of all weights; a stage may override it."
    )
    quantize: Literal["8bit", "4bit"] | None = Field(
        None,
        description="Load model.path's weights in 8 or 4 bits through bitsandbytes (a CUDA GPU and `pip install "
        "bitsandbytes`); quantized weights do not train, so it needs model.lora (4bit + LoRA is QLoRA).",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward instead of keeping them: less memory, ~30% slower."
    )
    spiking: SpikingSection | None = Field(
        None,
        description="Neurons and spike training of a bdh model (filled with the guide's defaults for a bdh preset; "
        "for a bdh folder, its neuron fields replace the folder's). Only for bdh models.",
    )

    @field_validator("path")
    @classmethod
    def _local_model(cls, path: str | None) -> str | None:
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ValueError(f"{path!r} is not a local Hugging Face model folder (no config.json)")
        return path

    @field_validator("spiking")
    @classmethod
    def _spiking_model(cls, spiking: SpikingSection | None, info: ValidationInfo) -> SpikingSection | None:
        preset, path = info.data.get("preset"), info.data.get("path")
        bdh = preset in BDH_PRESETS or (path is not None and folder_model_type(path) == BDH_MODEL_TYPE)
        if spiking is None:
            return SpikingSection() if preset in BDH_PRESETS else None
        if not bdh and (preset is not None or path is not None):
            model = f"preset {preset!r}" if preset is not None else f"{path!r} ({folder_model_type(path)})"
            raise ValueError(
                f"applies only to a bdh model (preset {', '.join(BDH_PRESETS)} or a folder trainguard exported "
                f"from one); {model} has no spiking neurons: remove it or pick a bdh preset"
            )
        return spiking

    @model_validator(mode="after")
    def _quantized_trains_adapters(self) -> "ModelSection":
        if self.quantize is not None and (self.path is None or self.lora is None):
            missing = "model.path (a preset is built in full precision)" if self.path is None else "model.lora"
            raise ValueError(f"model.quantize={self.quantize!r} needs {missing}: quantized weights do not train")
        return self

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.preset is None) == (self.path is None):
            presets = ", ".join(PRESET_LR)
            raise ValueError(f"set exactly one of 'preset' ({presets}) or 'path'")
        return self


def folder_model_type(path: str | None) -> str | None:
    """The `model_type` in a model folder's config.json (None when unreadable)."""
    try:
        return json.loads((Path(str(path)) / "config.json").read_text()).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


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
