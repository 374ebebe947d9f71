"""examples/custom_objective.yaml: a user's objective with a head and state, registered from its file."""

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.models.heads import ScalarHead, load_heads
from trainguard.track.store import read_metrics

EXAMPLE = Path(__file__).parent.parent / "examples" / "custom_objective.yaml"


def run_example(tmp_path: Path, *extra: str) -> object:
    overrides = [
        f"run.out_dir={tmp_path}",
        "stages.0.max_steps=60",
        "stages.0.eval_every=30",
        "stages.0.save_every=30",
        "eval.n=10",
        "tracking.progress=off",
        "tracking.tensorboard=false",
        "data.sources.0.n=800",
    ]
    args = ["run", str(EXAMPLE), *(x for o in overrides for x in ("--set", o)), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_the_custom_objective_example_trains_its_head_and_exports_it(tmp_path):
    run_example(tmp_path)
    run = tmp_path / "custom-objective"
    rows = read_metrics(run / "metrics.db")
    mae = [v for _, _, k, v, _ in rows if k == "aux/length_mae"]
    scale = [v for _, _, k, v, _ in rows if k == "aux/scale"]
    assert len(mae) == 60 and sum(mae[-10:]) / 10 < 0.5 * sum(mae[:5]) / 5  # the head learned lengths
    assert scale[0] != scale[-1]  # the state moved
    heads = load_heads(run / "final")
    assert set(heads) == {"length_head"} and isinstance(heads["length_head"], ScalarHead)
    assert heads["length_head"].proj.weight.abs().sum() > 0  # trained, not the zero init
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    assert torch.isfinite(next(model.parameters())).all()
    assert (run / "best" / "heads" / "length_head" / "model.safetensors").is_file()


def test_the_custom_objective_resumes_exactly_with_its_head_and_state(tmp_path):
    run_example(tmp_path)
    run = tmp_path / "custom-objective"
    want = [(s, k, v) for s, _, k, v, _ in read_metrics(run / "metrics.db") if not k.startswith("perf/")]
    want_head = load_file(run / "final" / "heads" / "length_head" / "model.safetensors")
    shutil.rmtree(run / "checkpoints" / "step-000060")  # lose the tail: resume from step 30
    shutil.rmtree(run / "final")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    result = run_example(tmp_path, "--resume")
    assert "resuming from step-000030" in result.output
    got = [(s, k, v) for s, _, k, v, _ in read_metrics(run / "metrics.db") if not k.startswith("perf/")]
    assert got == want  # aux/scale (the state) included
    got_head = load_file(run / "final" / "heads" / "length_head" / "model.safetensors")
    assert all(torch.equal(got_head[k], want_head[k]) for k in want_head)
