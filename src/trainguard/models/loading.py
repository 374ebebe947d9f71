"""Build the model and tokenizer a stage trains, and export them as a folder Hugging Face can load."""

import copy
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from trainguard.atomic import fsync_dir, replace_dir
from trainguard.errors import ConfigError, ExportError
from trainguard.models.bdh import MODEL_TYPE as BDH_MODEL_TYPE  # importing it registers bdh with the Auto classes
from trainguard.models.config import LoraSection, ModelSection, TokenizerSection, folder_model_type
from trainguard.models.heads import save_heads
from trainguard.models.presets import is_bdh_preset, preset_config
from trainguard.models.tokenizer import byte_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_tokenizer(model_cfg: ModelSection, tok_cfg: TokenizerSection, model_dir: str | None = None) -> Any:
    path = tok_cfg.path or model_dir or model_cfg.path
    tok = byte_tokenizer() if path is None else AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token  # right padding is masked out of the loss, so any id will do
    if tok_cfg.chat_template is not None:
        tok.chat_template = tok_cfg.chat_template
    return tok


INHERIT = "inherit"


def build_model(
    model_cfg: ModelSection,
    tokenizer: Any,
    max_positions: int,
    seed: int,
    path: str | None = None,
    lora: LoraSection | str | None = INHERIT,
) -> nn.Module:
    """A preset with seeded random init, or the causal LM at `path` (a stage's export, a folder) or
    `model_cfg.path`; wrapped with LoRA adapters when `lora` (default: the model's) says so. A bdh model's
    neurons come from `model_cfg.spiking` when set (for a folder: they replace the saved ones)."""
    lora = model_cfg.lora if lora == INHERIT else lora
    dtype = DTYPES[model_cfg.dtype]
    source = path or model_cfg.path
    neurons = model_cfg.spiking.neurons() if model_cfg.spiking is not None else {}
    if source is None:
        preset = model_cfg.preset or "tiny"
        cfg = preset_config(
            preset,
            vocab_size=len(tokenizer),
            max_positions=max_positions,
            bos=tokenizer.bos_token_id,
            eos=tokenizer.eos_token_id,
            pad=tokenizer.pad_token_id,
            **(neurons if is_bdh_preset(preset) else {}),
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: nn.Module = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    else:
        changes = neurons if folder_model_type(str(source)) == BDH_MODEL_TYPE else {}
        changes |= quantized(model_cfg.quantize, dtype) if model_cfg.quantize else {}
        model = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=dtype, **changes)
    if model_cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5; before: the old name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if isinstance(lora, LoraSection):
        if is_quantized(model):
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, model_cfg.gradient_checkpointing)
        model = add_lora(model, lora)
    return model


def is_quantized(model: nn.Module) -> bool:
    """Weights held by bitsandbytes: placed on their GPU at load, never moved."""
    return bool(getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False))


def quantized(bits: str, dtype: torch.dtype) -> dict[str, Any]:
    """from_pretrained's arguments for bitsandbytes weights on this process's GPU (4bit: NF4, as QLoRA)."""
    import importlib.util

    if not torch.cuda.is_available():
        raise ConfigError(f"model.quantize={bits!r} needs a CUDA GPU (bitsandbytes); this machine has none")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"model.quantize={bits!r} needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    if bits == "8bit":
        config = BitsAndBytesConfig(load_in_8bit=True)
    else:
        compute = dtype if dtype != torch.float32 else torch.bfloat16
        config = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute, bnb_4bit_use_double_quant=True
        )
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def linear_names(model: nn.Module) -> list[str]:
    """Last name parts of the model's linear layers (nn.Linear, and GPT-2's Conv1D), output head excluded."""
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear | Conv1D) and module is not head
    }
    return sorted(names)


def add_lora(model: nn.Module, cfg: LoraSection) -> nn.Module:
    """Adapters on the configured modules, or on every linear layer but the head (any architecture)."""
    from peft import LoraConfig, get_peft_model
    from transformers.pytorch_utils import Conv1D

    targets: list[str] | str = "all-linear"
    if cfg.target_modules is not None:
        present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
        targets = [m for m in cfg.target_modules if m in present]  # peft adapts embeddings too, not only linears
        if not targets:
            raise ConfigError(
                f"lora.target_modules {cfg.target_modules} match no module of this model; "
                f"its linear layers: {', '.join(linear_names(model))}"
            )
    conv1d = any(isinstance(m, Conv1D) for m in model.modules())  # GPT-2 stores weights transposed
    lora = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        fan_in_fan_out=conv1d,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # peft asks a deprecated transformers property; nothing for our users to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, lora)


def is_lora(model: nn.Module) -> bool:
    return hasattr(model, "peft_config")


def merged_copy(model: nn.Module) -> PreTrainedModel:
    """A plain transformers model with LoRA adapters folded in; the training model is left untouched."""
    if not is_lora(model):
        return model  # type: ignore[return-value]
    return copy.deepcopy(model).merge_and_unload()


def export_model(
    model: nn.Module,
    tokenizer: Any,
    out: Path,
    heads: dict[str, nn.Module] | None = None,
    extra_files: dict[str, str] | None = None,
) -> None:
    """Write `out/` atomically: a temporary folder is filled, fsynced, then renamed over any old one. The
    objective's heads go to `heads/<key>/` (see models/heads.py)."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        merged = merged_copy(model)
        generation = merged.generation_config  # plain generate() must stop at EOS and know the pad
        if generation.pad_token_id is None:
            generation.pad_token_id = tokenizer.pad_token_id
        if generation.eos_token_id is None:
            generation.eos_token_id = tokenizer.eos_token_id
        merged.save_pretrained(tmp, safe_serialization=True)
        if is_lora(model):
            model.save_pretrained(tmp / "adapter")  # the adapter alone, for users who keep the base
        tokenizer.save_pretrained(tmp)
        save_heads(heads or {}, tmp)
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        fsync_dir(tmp)
        replace_dir(tmp, out)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ExportError(f"could not export the model to {out}: {err.strerror or err}") from None
