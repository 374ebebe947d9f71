"""Presets built from a config with random init; sizes counted with the byte vocabulary. Llama-style ones, and
the spiking `bdh-*` ones (models/bdh.py: a Llama whose MLPs are LIF neurons, two projections instead of three)."""

from typing import Any

from transformers import LlamaConfig

from trainguard.models.bdh import BdhConfig
from trainguard.models.config import BDH_PRESETS

# name: (hidden, layers, heads, intermediate) -> parameters with a 259-token vocabulary
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "tiny": (128, 4, 4, 352),  # ~0.87M
    "small": (320, 8, 5, 864),  # ~10.1M
    "base": (576, 12, 9, 1536),  # ~48M
    "bdh-small": (128, 4, 4, 512),  # ~0.85M: the Dragon Hatching guide's 4 layers x 128
    "bdh-medium": (256, 6, 4, 1024),  # ~4.9M
    "bdh-large": (512, 8, 8, 2048),  # ~25M
}


def is_bdh_preset(name: str | None) -> bool:
    return name in BDH_PRESETS


def preset_config(
    name: str, vocab_size: int, max_positions: int, bos: int, eos: int, pad: int, **spiking: Any
) -> LlamaConfig:
    """The preset's config; `spiking` (tau_mem, tau_syn, threshold, spike_steps, surrogate_slope) sets a bdh
    preset's neurons (BdhConfig's defaults otherwise) and is refused for a Llama one."""
    hidden, layers, heads, intermediate = PRESETS[name]
    if spiking and not is_bdh_preset(name):
        raise ValueError(f"preset {name!r} has no spiking neurons; {sorted(spiking)} apply to bdh-* presets")
    cls = BdhConfig if is_bdh_preset(name) else LlamaConfig
    return cls(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        **spiking,
    )
