"""Model FLOPs utilisation: the FLOPs a step's tokens need (PaLM's count) over what the device could do.

The count is the convention MFU is quoted in: 6 FLOPs per parameter per token (forward 2, backward 4) for every
weight that multiplies (the input embedding is a lookup, so it is left out; a tied head is counted once), plus
12·layers·hidden·T for attention scores and their use over a T-token context. It is the same whether or not a
weight is trained, so LoRA and frozen bases report what the model costs, not what the optimizer touches.
"""

from typing import Any

import torch
from torch import nn

# Dense (no sparsity) tensor-core peaks in TFLOP/s by device-name substring, from the vendors' data sheets; the
# first match wins, so longer names come first. fp32 means the plain (non-TF32) rate.
PEAK_TFLOPS: dict[str, dict[torch.dtype, float]] = {
    "H200": {torch.bfloat16: 989.4, torch.float16: 989.4, torch.float32: 66.9},
    "H100": {torch.bfloat16: 989.4, torch.float16: 989.4, torch.float32: 66.9},
    "A100": {torch.bfloat16: 312.0, torch.float16: 312.0, torch.float32: 19.5},
    "L40S": {torch.bfloat16: 362.1, torch.float16: 362.1, torch.float32: 91.6},
    "L4": {torch.bfloat16: 121.0, torch.float16: 121.0, torch.float32: 30.3},
}


def peak_flops(device: torch.device, dtype: torch.dtype, override_tflops: float | None = None) -> float | None:
    """FLOP/s of one `device` at `dtype` (the autocast dtype when there is one): `override_tflops` when set,
    else the table's entry for a CUDA device's name; None for a CPU or an unknown GPU (MFU is then not logged)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return table_peak(torch.cuda.get_device_name(device), dtype)


def table_peak(name: str, dtype: torch.dtype) -> float | None:
    """FLOP/s of the first table entry whose key is in the device `name`, at `dtype`; None when none is."""
    for key, peaks in PEAK_TFLOPS.items():
        if key in name:
            return peaks[dtype] * 1e12 if dtype in peaks else None
    return None


def matmul_params(model: nn.Module) -> int:
    """Parameters that multiply: all of them, less the input embedding unless the output head shares it."""
    total = sum(p.numel() for p in model.parameters())
    embed = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if embed is None:
        return total
    tied = head is not None and head.weight is embed.weight
    return total if tied else total - embed.weight.numel()


def flops_per_token(config: Any, n_params: int, context: float) -> float:
    """Training FLOPs per token at a mean context of `context` tokens: 6N + 12·layers·hidden·context."""
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", 0)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", 0)
    return 6.0 * n_params + 12.0 * layers * hidden * context
