"""Model text for the constitution's judges and pipelines: the repo's batched decoding, in eval mode."""

from typing import Any

import torch
from torch import nn

from trainguard.data.sources import generating
from trainguard.eval.accuracy import generate_text


def check_device(model: nn.Module, device: torch.device | str | None) -> None:
    """Fail early if `model` is not on `device`: inputs follow the model's parameters, so the model must
    already be where the caller wants the work done (nothing here moves a model behind the caller's back)."""
    if device is None:
        return
    want = torch.device(device)
    have = next(model.parameters()).device
    if want.type != have.type or (want.index is not None and have.index is not None and want.index != have.index):
        raise ValueError(f"model is on {have}, not on the requested device {want}; move it there first")


def generate(
    model: nn.Module, tokenizer: Any, prompts: list[str], max_new_tokens: int, temperature: float | None = None
) -> list[str]:
    """Continuations of `prompts` (greedy when `temperature` is None), with dropout off while decoding."""
    if not prompts:
        return []
    with generating(model):
        return generate_text(model, tokenizer, prompts, max_new_tokens, temperature=temperature)
