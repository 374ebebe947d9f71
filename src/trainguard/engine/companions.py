"""Frozen companions of a stage: a reference policy and models loaded by path (a reward model). Built once
at stage start, frozen and in eval mode, recorded in the manifest by path and content hash, and never saved
in checkpoints (they are rebuilt from where they came from)."""

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM

from trainguard.engine.checkpoint import sha256_file
from trainguard.models.heads import load_heads


@dataclass
class Companion:
    module: Any  # callable like the model: module(input_ids=...) -> outputs
    source: str  # a folder, or what it was made from
    sha256: str
    heads: dict[str, nn.Module] | None = None

    def record(self) -> dict[str, str]:
        return {"path": self.source, "sha256": self.sha256}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)


def tensors_sha256(module: nn.Module) -> str:
    """Content hash of a module's tensors (names, dtypes, shapes, bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def folder_sha256(path: Path) -> str:
    """Content hash of a model folder: every file's relative path and sha256, in order."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path)}:{sha256_file(f)}\n".encode())
    return h.hexdigest()


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


class AdapterDisabled:
    """The policy with its LoRA adapter switched off, i.e. the base it started from: no second copy in
    memory. Not an nn.Module, so the policy's parameters are not registered twice."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        was_training = self.policy.training
        self.policy.eval()  # a companion is in eval mode: no dropout in the base either
        try:
            with torch.no_grad(), self.policy.disable_adapter():
                return self.policy(*args, **kwargs)
        finally:
            self.policy.train(was_training)


class FrozenCopy:
    """A frozen deep copy called under no_grad."""

    def __init__(self, module: nn.Module) -> None:
        self.module = freeze(module)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.no_grad():
            return self.module(*args, **kwargs)


def reference_policy(mode: str, policy: nn.Module, start: str, device: torch.device) -> Companion:
    """`copy`: a frozen copy of the stage's starting policy; `adapter`: the policy with its adapter off."""
    if mode == "adapter":
        base = [(n, p) for n, p in policy.named_parameters() if "lora_" not in n]
        h = hashlib.sha256()
        for name, p in base:
            h.update(name.encode())
            h.update(p.detach().contiguous().cpu().view(torch.uint8).numpy().tobytes())
        return Companion(AdapterDisabled(policy), f"{start} (policy with the adapter disabled)", h.hexdigest())
    module = copy.deepcopy(policy).to(device)
    return Companion(FrozenCopy(module), start, tensors_sha256(module))


def load_companion(path: Path, device: torch.device, dtype: torch.dtype | None = None) -> Companion:
    """A causal LM folder (with any heads exported beside it), frozen on `device`."""
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    heads = {k: freeze(h).to(device) for k, h in load_heads(path).items()}
    return Companion(FrozenCopy(model.to(device)), str(path), folder_sha256(path), heads)
