"""Attention masks handed to a transformers model as they are: 4D and additive (0 where a query may read a key,
the dtype's lowest value where not), the one form both eager and SDPA attention read correctly."""

import torch
from torch import nn


def additive(allowed: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A boolean (B, 1, Q, K) mask as the additive float mask of the model's compute dtype."""
    dtype = getattr(model, "dtype", torch.float32)
    dtype = dtype if dtype.is_floating_point else torch.float32
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)
