"""The bdh preset trained through the real engine: the sparsity term pulls the firing rate to its target, and a
membrane that overshoots (tau_mem below 0.5) makes NaN gradients that the guard catches before they reach the
weights; raising tau_mem (the guide's remedy) trains the same run cleanly."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.track.store import read_metrics, read_table

pytestmark = pytest.mark.slow


def train(tmp_path: Path, name: str, spiking: dict, steps: int, **stage: object) -> tuple[int, str, Path]:
    cfg = tiny_config(tmp_path / "runs", model={"preset": "bdh-small", "spiking": spiking})
    cfg["run"]["name"] = name
    cfg["stages"][0] |= {"max_steps": steps, "batch_size": 16, "eval_every": steps, "save_every": steps, **stage}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / f"{name}.yaml", cfg))])
    return result.exit_code, result.output, tmp_path / "runs" / name


def series(run: Path, key: str) -> list[float]:
    return [v for _, _, k, v, _ in sorted(read_metrics(run / "metrics.db")) if k == key]


def test_sparsity_term_pulls_the_firing_rate_to_its_target(tmp_path):
    # threshold 0.4 starts the neurons at ~25% firing; a weight of 1 (not the guide's 0.001, which needs far more
    # than 40 steps to show) against no term at all, same seed and data
    runs = {}
    for name, weight in (("off", 0.0), ("on", 1.0)):
        code, out, run = train(tmp_path, name, {"threshold": 0.4, "sparsity_weight": weight}, 40)
        assert code == 0, out
        runs[name] = series(run, "spike/firing")
        assert len(runs[name]) == 40
        for i in range(4):
            for stat in ("firing", "mean", "std"):
                assert len(series(run, f"spike/L{i}/{stat}")) == 40
        assert len(series(run, "loss/sparsity")) == 40
    off, on = runs["off"], runs["on"]
    assert off[0] == on[0] and 0.2 < on[0] < 0.3  # the first step's forward precedes any update
    last_off, last_on = sum(off[-5:]) / 5, sum(on[-5:]) / 5
    assert abs(last_on - 0.1) < 0.03  # measured 0.099
    assert last_off > on[0] + 0.1  # without the term it fires more still (measured 0.41)
    assert series(tmp_path / "runs" / "off", "loss/sparsity") == [0.0] * 40


def test_an_overshooting_membrane_goes_nan_and_the_guard_stops_it_before_the_weights(tmp_path):
    unstable = {"tau_mem": 0.3, "spike_steps": 64}  # |1 - 1/0.3|^64 overflows the backward: NaN at once
    with pytest.warns(UserWarning, match=r"model\.spiking\.tau_mem=0\.3 is below 1"):
        code, out, run = train(tmp_path, "nan", unstable, 12, guard={"max_rollbacks": 2})
    assert code == 3, out
    assert "the guard stopped the run at step 1: nonfinite; no rollback left" in out
    assert series(run, "grad/nan_count")[0] > 0
    alerts = read_table(run / "metrics.db", "alerts")
    kinds = [a["kind"] for a in alerts]
    assert kinds.count("nonfinite") == 3 and kinds.count("membrane_overshoot") == 3
    overshoot = next(a for a in alerts if a["kind"] == "membrane_overshoot")
    assert "raise tau_mem (model.spiking.tau_mem" in overshoot["recommendation"]
    report = json.loads((run / "guard_report.json").read_text())
    actions = [a["message"] for a in report["actions"]]
    assert sum(m.startswith("rollback to step-000000") for m in actions) == 2 and actions[-1].startswith("stop at")
    assert json.loads((run / "manifest.json").read_text())["status"] == "stopped"
    # no NaN update was applied: every saved checkpoint holds the finite initial weights
    start, last = (load_file(run / "checkpoints" / s / "model.safetensors") for s in ("step-000000", "step-000001"))
    assert all(torch.isfinite(t).all() for t in last.values())
    assert all(torch.equal(start[k], last[k]) for k in start)

    code, out, run = train(tmp_path, "remedy", {"tau_mem": 10.0, "spike_steps": 64}, 12)
    assert code == 0, out
    assert all(math.isfinite(g) for g in series(run, "grad/norm"))
    kinds = {a["kind"] for a in read_table(run / "metrics.db", "alerts")}
    assert not kinds & {"nonfinite", "membrane_overshoot"}


def test_an_exported_bdh_folder_generates_without_trainguard(tmp_path):
    from trainguard.models.config import ModelSection
    from trainguard.models.loading import build_model, export_model
    from trainguard.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    model = build_model(ModelSection(preset="bdh-small", spiking={"threshold": 0.5}), tok, 64, seed=0)
    export_model(model, tok, tmp_path / "final")
    ids = tok("abc")["input_ids"]
    with torch.no_grad():
        expected = model.eval().generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False)[0].tolist()
    script = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'final')!r}, trust_remote_code=True)\n"
        f"out = m.generate(torch.tensor([{ids}]), max_new_tokens=5, do_sample=False)[0].tolist()\n"
        "print(out, m.config.threshold, 'trainguard' in sys.modules)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == f"{expected} 0.5 False"
