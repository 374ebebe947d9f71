"""End to end: injected faults are caught, rolled back or skipped, and the run still finishes healthy."""

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.track.store import read_metrics, read_table

runner = CliRunner()
STAGE = {
    "name": "sft",
    "objective": "sft",
    "max_steps": 80,
    "batch_size": 16,
    "optimizer": {"lr": 1e-3},
    "schedule": {"warmup_steps": 10},
    "eval_every": 40,
    "save_every": 10,
    "save_total_limit": 3,
}


def train(tmp_path: Path, faults: list[dict], **sections) -> tuple[int, str, Path]:
    cfg = write_config(tmp_path / "f.yaml", tiny_config(tmp_path / "runs", stages=[STAGE], faults=faults, **sections))
    result = runner.invoke(app, ["run", str(cfg)])
    return result.exit_code, result.output, tmp_path / "runs" / "t"


def test_nan_and_lr_spike_are_rolled_back_and_the_run_ends_healthy(tmp_path):
    code, out, run = train(
        tmp_path,
        [{"kind": "nan_loss", "at_step": 35}, {"kind": "lr_spike", "at_step": 55, "duration": 2, "magnitude": 300}],
    )
    assert code == 0, out
    db = run / "metrics.db"
    alerts = [(a["step"], a["kind"], a["severity"]) for a in read_table(db, "alerts") if a["severity"] != "info"]
    assert alerts[0] == (35, "nonfinite", "critical")
    assert (55, "update_ratio", "warning") in alerts
    rollbacks = [json.loads(e["data"]) for e in read_table(db, "events") if e["kind"] == "action"]
    assert [(r["action"], r["target"], r["onset"]) for r in rollbacks] == [("rollback", 30, 35), ("rollback", 50, 56)]
    assert rollbacks[0]["skipped_samples"] == 5 * 16  # the batches of steps 31..35, the NaN one included

    losses = {s: v for s, _, k, v, _ in read_metrics(db) if k == "loss/train"}
    assert sorted(losses) == list(range(1, 81)) and all(math.isfinite(v) for v in losses.values())
    final = json.loads((run / "checkpoints" / "step-000080" / "manifest.json").read_text())
    assert final["healthy"] is True
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    weights = load_file(run / "final" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert sum(list(losses.values())[-5:]) / 5 < sum(list(losses.values())[:5]) / 5


def test_bad_batches_are_skipped_without_a_forward_pass(tmp_path):
    code, out, run = train(
        tmp_path,
        [
            {"kind": "contaminate", "at_step": 20},
            {"kind": "corrupt_batch", "at_step": 30, "mode": "repeat_ngram", "magnitude": 0.25},
        ],
    )
    assert code == 0, out
    db = run / "metrics.db"
    skipped = sorted(s for s, _, k, v, _ in read_metrics(db) if k == "guard/skipped")
    assert skipped == [20, 30]
    assert not [s for s, _, k, _, _ in read_metrics(db) if k == "loss/train" and s in (20, 30)]
    kinds = {a["kind"] for a in read_table(db, "alerts")}
    assert {"contamination", "repetition"} <= kinds
    lines = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert any(x["kind"] == "alert" and x["alert"] == "contamination" for x in lines)


def test_rollbacks_are_capped_then_the_run_stops_with_a_report(tmp_path):
    code, out, run = train(tmp_path, [{"kind": "nan_loss", "at_step": 25, "duration": 20}], guard={"max_rollbacks": 2})
    assert code == 3, out
    assert "the guard stopped the run" in out
    report = json.loads((run / "guard_report.json").read_text())
    assert report["alerts_by_kind"]["nonfinite"] == 3
    actions = [a["message"] for a in report["actions"]]
    assert sum(m.startswith("rollback to") for m in actions) == 2 and actions[-1].startswith("stop at step")
    assert json.loads((run / "manifest.json").read_text())["status"] == "stopped"


def test_clean_tiny_run_raises_nothing_above_info(tmp_path):
    code, out, run = train(tmp_path, [])
    assert code == 0, out
    assert [a for a in read_table(run / "metrics.db", "alerts") if a["severity"] != "info"] == []
    assert all(json.loads((p / "manifest.json").read_text())["healthy"] for p in (run / "checkpoints").iterdir())


def test_monitor_snapshot_plot_and_export(tmp_path):
    code, out, run = train(tmp_path, [{"kind": "nan_loss", "at_step": 35}])
    assert code == 0, out
    snap = runner.invoke(app, ["monitor", str(run), "--once"])
    assert snap.exit_code == 0
    assert "step 80/80" in snap.output and "nonfinite" in snap.output and "rollback to step-000030" in snap.output
    live = runner.invoke(app, ["monitor", str(run), "--interval", "0.1"])  # the live view ends with the run
    assert live.exit_code == 0 and "latest alerts" in live.output
    png, csv = tmp_path / "m.png", tmp_path / "m.csv"
    made = runner.invoke(app, ["monitor", str(run), "--plot", str(png), "--export", str(csv)])
    assert made.exit_code == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert len(csv.read_text().splitlines()) == 81
