"""A real process killed with SIGKILL at random moments (once inside a checkpoint write) and resumed
ends with the same metrics and bit-identical weights as a run that was never killed."""

import os
import random

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import comparable, in_checkpoint_write, kill_when, max_step, start, tiny_config, write_config
from trainguard.cli import app

STEPS = 45


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


def test_a_checkpoint_from_another_world_size_is_refused_by_name(tmp_path):
    import json

    from trainguard import api
    from trainguard.errors import RunDirError

    cfg = tiny_config(tmp_path / "runs")
    result = api.run(cfg)
    latest = sorted((result.path / "checkpoints").glob("step-*"))[-1]
    manifest = json.loads((latest / "manifest.json").read_text())
    assert manifest["world_size"] == 1  # what wrote it
    (latest / "manifest.json").write_text(json.dumps(manifest | {"world_size": 2}))  # as if 2 ranks had
    longer = ["stages.0.max_steps=16"]  # a finished run resumes only to be extended
    with pytest.raises(RunDirError, match=r"written by 2 process\(es\) and this run has 1.*--nproc_per_node 2"):
        api.run(cfg, resume=True, overrides=longer)
