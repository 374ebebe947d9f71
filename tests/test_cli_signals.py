"""SIGTERM (`kill`, a scheduler's preemption) stops a real `trainguard run` the way Ctrl-C does: a resumable
folder marked `interrupted`, the hint to resume, and exit status 143 (128 + 15)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import tiny_config, write_config
from trainguard.track.store import read_metrics

STEPS = 300  # ~10 s of training on one thread: still running when the first checkpoint lands


def trainguard(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "w") as err:  # a file, not a pipe: nothing blocks however much the process writes
        return subprocess.Popen(
            [sys.executable, "-m", "trainguard", *args], env=env, stdout=subprocess.DEVNULL, stderr=err
        )


def wait_for(ready, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"trainguard exited with {proc.returncode} before the wait was over")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError("timed out waiting for the run")
        time.sleep(0.05)


def has_checkpoint(ckpts: Path) -> bool:
    return ckpts.is_dir() and any(p.name.startswith("step-") for p in ckpts.iterdir())


@pytest.mark.slow
def test_sigterm_marks_the_run_interrupted_and_resume_finishes_it(tmp_path):
    stage = {"name": "sft", "objective": "sft", "max_steps": STEPS, "batch_size": 8, "eval_every": 100,
             "save_every": 10, "save_total_limit": 2}  # fmt: skip
    cfg = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "runs", stages=[stage]))
    run = tmp_path / "runs" / "t"

    proc = trainguard("run", str(cfg), log=tmp_path / "run.err")
    wait_for(lambda: has_checkpoint(run / "checkpoints"), proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    stderr = (tmp_path / "run.err").read_text()
    assert f"interrupted; continue with: trainguard resume {run}" in stderr and "Traceback" not in stderr
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    assert not (run / "final").exists()

    proc = trainguard("resume", str(run), log=tmp_path / "resume.err")
    assert proc.wait(timeout=300) == 0, (tmp_path / "resume.err").read_text()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["resumes"]) == 1
    steps = [s for s, _, k, _, _ in read_metrics(run / "metrics.db") if k == "loss/train"]
    assert steps == list(range(1, STEPS + 1))
