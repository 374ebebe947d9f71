"""The process's torch switches (threads, deterministic kernels) and its Accelerator, set once per run."""

import os

import torch
from accelerate import Accelerator

from trainguard.run_sections import RunSection


def configure_torch(cfg: RunSection) -> Accelerator:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Deterministic mode also fills every new buffer with NaN, a debugging aid that costs a full write per
        # allocation (~0.1 s a step in a log-prob head); kernels stay deterministic without it.
        torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    precision = cfg.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=precision)
