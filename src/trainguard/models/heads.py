"""Trainable heads an objective owns (a value head, a reward head) and how they travel with the model.

Export layout, beside the model's own files: `heads/<key>/model.safetensors` and `heads/<key>/config.json`
= {"class": "package.module:Class", "init": {constructor keyword arguments}}. `load_heads(folder)`
imports each class (a user's head needs its plugin imported first) and loads the weights."""

import importlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trainguard.errors import ExportError


class ScalarHead(nn.Module):
    """hidden state (…, H) -> one scalar (…): a value or a reward. Zero-initialised, so it starts neutral."""

    def __init__(self, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        self.hidden_size, self.bias = hidden_size, bias
        self.proj = nn.Linear(hidden_size, 1, bias=bias)
        nn.init.zeros_(self.proj.weight)
        if bias:
            nn.init.zeros_(self.proj.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden).squeeze(-1)

    def head_config(self) -> dict[str, Any]:
        return {"hidden_size": self.hidden_size, "bias": self.bias}


def class_path(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def save_heads(heads: dict[str, nn.Module], folder: Path) -> None:
    """Write each head's weights and config under `folder/heads/<key>/` (the folder is a temporary one)."""
    for key, head in heads.items():
        out = Path(folder) / "heads" / key
        out.mkdir(parents=True, exist_ok=True)
        init = head.head_config() if hasattr(head, "head_config") else {}
        save_file({k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}, out / "model.safetensors")
        (out / "config.json").write_text(json.dumps({"class": class_path(head), "init": init}, indent=2) + "\n")


def load_heads(folder: Path | str) -> dict[str, nn.Module]:
    """Heads exported beside a model, rebuilt from their config and loaded (strictly)."""
    root = Path(folder) / "heads"
    heads: dict[str, nn.Module] = {}
    if not root.is_dir():
        return heads
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        spec = json.loads((sub / "config.json").read_text())
        module_name, _, qualname = spec["class"].partition(":")
        try:
            cls: Any = importlib.import_module(module_name)
            for part in qualname.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as err:
            why = f"cannot import head class {spec['class']} ({err}); import its plugin first"
            raise ExportError(f"{sub}: {why}") from None
        head = cls(**spec["init"])
        head.load_state_dict(load_file(sub / "model.safetensors"))
        heads[sub.name] = head.eval()
    return heads
