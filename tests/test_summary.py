"""The end-of-run summary describes whole stages from the store: a resumed run reports the same steps and
a comparable throughput as an uninterrupted one, and counts the guard's rollbacks and skipped steps."""

import json
import shutil

from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.track.store import read_metrics
from trainguard.track.summary import stage_summaries


def test_a_resumed_run_summarises_the_whole_stage(make_config, tmp_path):
    cfg = make_config()
    assert CliRunner().invoke(app, ["run", str(cfg)]).exit_code == 0
    run = tmp_path / "runs" / "t"
    (full,) = stage_summaries(run / "metrics.db")
    shutil.rmtree(run / "checkpoints" / "step-000012")
    shutil.rmtree(run / "final")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    result = CliRunner().invoke(app, ["run", str(cfg), "--resume"])
    assert result.exit_code == 0
    (resumed,) = stage_summaries(run / "metrics.db")
    assert resumed.steps == full.steps == 12 and resumed.losses == full.losses
    assert 0.3 < resumed.tokens_per_s / full.tokens_per_s < 3  # not the last step's rate alone
    rows = [(k, v) for _, _, k, v, _ in read_metrics(run / "metrics.db")]
    rates = [v for k, v in rows if k == "perf/tokens_per_s"]
    times = [v for k, v in rows if k == "perf/step_time_s"]
    tokens = sum(r * t for r, t in zip(rates, times, strict=True))
    assert len(rates) == 12 and abs(resumed.tokens_per_s - tokens / sum(times)) < 1e-6 * tokens
    assert "stage mean" in result.output


def test_rollbacks_and_skipped_steps_are_counted(make_config, tmp_path):
    faults = [{"kind": "nan_loss", "at_step": 6}, {"kind": "grad_spike", "at_step": 10, "magnitude": 1e6}]
    cfg = make_config(faults=faults)
    assert CliRunner().invoke(app, ["run", str(cfg)]).exit_code == 0
    (s,) = stage_summaries(tmp_path / "runs" / "t" / "metrics.db")
    assert (s.steps, s.rollbacks, s.skipped) == (12, 1, 1)
    assert s.train_loss == s.losses[-1]  # 12 steps: the last 10% is one step
