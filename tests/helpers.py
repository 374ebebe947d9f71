"""Run files for tests (the tiny model on generated words, a few steps long), and a training process to kill."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from trainguard.track.store import read_metrics


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


def hf_folder(path: Path, arch: str = "gpt2", width: int = 64) -> Path:
    """A 2-layer model of `arch` (gpt2: Conv1D layers, learned positions; llama; qwen2: biased q/k/v, tied
    embeddings) with the byte vocabulary, seeded and saved with its tokenizer: a Hugging Face folder built offline."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

    from trainguard.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    if arch == "gpt2":
        config = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=width, n_layer=2, n_head=2, **ids)
    else:
        kinds = {"llama": LlamaConfig, "qwen2": Qwen2Config}
        extra = {"tie_word_embeddings": True} if arch == "qwen2" else {}
        config = kinds[arch](
            vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, **ids, **extra,
        )  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def gpt2_folder(path: Path, n_embd: int = 64) -> Path:
    """A model folder that is not Llama (Conv1D layers)."""
    return hf_folder(path, "gpt2", n_embd)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def comparable(run: Path) -> list[tuple]:
    """Every metric row except wall-clock ones (perf/, time/), in step order."""
    rows = read_metrics(run / "metrics.db")
    rows = [(s, st, k, v) for s, st, k, v, _ in rows if not k.startswith(("perf/", "time/"))]
    return sorted(rows, key=lambda r: (r[0], r[2]))


def max_step(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COALESCE(MAX(step), 0) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0


def in_checkpoint_write(ckpt_dir: Path) -> bool:
    try:
        return any(p.name.startswith(".tmp-") for p in ckpt_dir.iterdir())
    except FileNotFoundError:
        return False


def start(cfg: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "trainguard", "run", str(cfg), "--resume"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def kill_when(proc: subprocess.Popen, ready, deadline_s: float = 120) -> bool:
    """SIGKILL `proc` as soon as `ready()` holds; False if it finished first."""
    end = time.monotonic() + deadline_s
    while proc.poll() is None and time.monotonic() < end:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.001)
    if proc.poll() is None:
        proc.kill()
        raise AssertionError("training process hung")
    return False
