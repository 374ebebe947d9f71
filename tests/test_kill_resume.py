"""A real process killed with SIGKILL at random moments (once inside a checkpoint write) and resumed
ends with the same metrics and bit-identical weights as a run that was never killed."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.track.store import read_metrics

STEPS = 45


def comparable(run: Path) -> list[tuple]:
    """Every metric row except wall-clock ones, in step order."""
    rows = [(s, st, k, v) for s, st, k, v, _ in read_metrics(run / "metrics.db") if not k.startswith("perf/")]
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


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_exact(tmp_path):
    seed = int(os.environ.get("KILL_SEED", random.randrange(1 << 16)))
    rng = random.Random(seed)
    stage = {
        "name": "sft",
        "objective": "sft",
        "max_steps": STEPS,
        "batch_size": 8,
        "optimizer": {"lr": 3e-3},
        "schedule": {"warmup_steps": 3},
        "eval_every": 7,
        "save_every": 3,
        "save_total_limit": 3,
    }
    ref_cfg = write_config(tmp_path / "ref.yaml", tiny_config(tmp_path / "ref", stages=[stage]))
    assert CliRunner().invoke(app, ["run", str(ref_cfg)]).exit_code == 0
    ref = tmp_path / "ref" / "t"

    cfg = write_config(tmp_path / "killed.yaml", tiny_config(tmp_path / "killed", stages=[stage]))
    run = tmp_path / "killed" / "t"
    db, ckpts = run / "metrics.db", run / "checkpoints"
    # First a kill inside a checkpoint write (retried until one leaves a partial folder behind) ...
    for _ in range(3):
        assert kill_when(start(cfg), lambda: in_checkpoint_write(ckpts)), "the run ended before a checkpoint"
        if in_checkpoint_write(ckpts):
            break
    assert in_checkpoint_write(ckpts), f"seed {seed}: never caught a checkpoint write in progress"
    # ... then kills at random steps, each after the previous resume has moved on.
    for _ in range(2):
        target = max(max_step(db), 1) + rng.randrange(1, 8)
        if target >= STEPS:
            break
        assert kill_when(start(cfg), lambda t=target: max_step(db) >= t), f"seed {seed}: run ended first"
    proc = start(cfg)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out.decode()

    want, got = load_file(ref / "final" / "model.safetensors"), load_file(run / "final" / "model.safetensors")
    assert all(torch.equal(want[k], got[k]) for k in want), f"seed {seed}: final weights differ"
    assert comparable(run) == comparable(ref), f"seed {seed}: metrics differ"
    assert not any(p.name.startswith(".") for p in ckpts.iterdir())
