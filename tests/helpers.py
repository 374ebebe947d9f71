"""Run files for tests: the tiny model on generated words, a few steps long."""

from pathlib import Path
from typing import Any

import yaml


def tiny_config(out_dir: Path, **sections: Any) -> dict[str, Any]:
    """A run that trains the tiny preset on generated words for a few steps."""
    cfg: dict[str, Any] = {
        "run": {"name": "t", "seed": 0, "out_dir": str(out_dir), "threads": 1},
        "model": {"preset": "tiny"},
        "tokenizer": {"max_length": 32},
        "data": {"sources": [{"task": "reverse", "n": 400, "params": {"min_len": 3, "max_len": 6}}]},
        "stages": [
            {
                "name": "sft",
                "objective": "sft",
                "max_steps": 12,
                "batch_size": 8,
                "optimizer": {"lr": 3e-3},
                "schedule": {"warmup_steps": 2},
                "eval_every": 6,
                "save_every": 4,
                "save_total_limit": None,
            }
        ],
        "tracking": {"tensorboard": False, "progress": "off"},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
