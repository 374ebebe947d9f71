"""Attention masks handed to a transformers model as they are: 4D and additive (0 where a query may read a key,
the dtype's lowest value where not), the one form both eager and SDPA attention read correctly; and which models
can take them."""

from typing import Any

import torch
from torch import nn

ALIBI_MODELS = ("bloom", "mpt", "falcon")  # positions come from a 2D mask, not from position ids


def additive(allowed: torch.Tensor, model: Any) -> torch.Tensor:
    """A boolean (B, 1, Q, K) mask as the additive float mask of the dtype the model's attention computes in."""
    dtype = compute_dtype(model, allowed.device)
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def compute_dtype(model: Any, device: torch.device) -> torch.dtype:
    """The autocast dtype if autocast is on, else the first floating weight's (a reference companion is read
    through the modules it wraps)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    while model is not None and not isinstance(model, nn.Module):
        model = getattr(model, "module", None) or getattr(model, "policy", None)
    weights = model.parameters() if model is not None else iter(())
    return next((p.dtype for p in weights if p.is_floating_point()), torch.float32)


def unsupported(model: nn.Module) -> str | None:
    """Why a model cannot read a custom 4D mask with per-sample positions (None: it can)."""
    config = model.config
    attention = getattr(config, "_attn_implementation", "eager")
    if attention not in ("eager", "sdpa"):
        return f"its attention is {attention!r}, which takes no 4D mask (use sdpa or eager)"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "it has sliding-window attention layers"
    if config.model_type in ALIBI_MODELS or getattr(config, "alibi", False):
        return "it places tokens with ALiBi, read from a 2D mask"
    return None
