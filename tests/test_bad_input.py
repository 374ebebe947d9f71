"""Bad input gets a one-line error and exit status 2, never a traceback nor a half-made run folder."""

import json
import resource
import signal

from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.config import StageSection
from trainguard.engine.stage import stage_steps

runner = CliRunner()


def test_unwritable_out_dir(make_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = runner.invoke(app, ["run", str(make_config(run={"name": "t", "out_dir": str(blocker / "runs")}))])
    assert result.exit_code == 2
    assert "run.out_dir" in result.output and "not writable" in result.output and "Traceback" not in result.output


def test_empty_data_file_stops_before_any_run_folder_exists(make_config, tmp_path):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    result = runner.invoke(app, ["run", str(make_config(data={"sources": [{"path": str(data)}]}))])
    assert result.exit_code == 2 and "no usable records" in result.output
    assert not (tmp_path / "runs" / "t").exists()


def test_missing_data_file(make_config, tmp_path):
    result = runner.invoke(app, ["run", str(make_config(data={"sources": [{"path": str(tmp_path / "no.jsonl")}]}))])
    assert result.exit_code == 2 and "data.sources.0" in result.output and "no.jsonl' not found" in result.output


def test_bad_rows_are_reported_and_training_goes_on(make_config, tmp_path):
    data = tmp_path / "mixed.jsonl"
    good = [json.dumps({"prompt": f"reverse: {w}\n", "completion": w[::-1]}) for w in ("abc", "hello", "xyz", "tree")]
    data.write_text("\n".join([*good * 5, "{broken", json.dumps({"prompt": "p"})]) + "\n")
    cfg = make_config(data={"sources": [{"path": str(data)}]})
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "20 of 22 rows usable; skipped 1 malformed JSON (first at line 21), 1 missing 'completion'" in result.output
    events = [json.loads(x) for x in (tmp_path / "runs" / "t" / "events.jsonl").read_text().splitlines()]
    data_events = [e for e in events if e["kind"] == "data"]
    assert data_events[0]["severity"] == "warning" and data_events[0]["bad"] == {
        "malformed JSON": 1,
        "missing 'completion'": 1,
    }


def test_epochs_become_steps():
    stage = StageSection(name="s", objective="sft", epochs=2.5, batch_size=4, grad_accum=2)
    assert stage_steps(stage, n_train=100) == 32  # ceil(2.5 * 100 / 8)


def test_full_disk_at_a_checkpoint_exits_2_and_leaves_no_partial_folder(make_config, tmp_path):
    cfg = make_config()
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over-limit writes fail with EFBIG, like ENOSPC
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, hard))  # 2 MB: the 3.5 MB weights file cannot fit
    try:
        result = runner.invoke(app, ["run", str(cfg)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert result.exit_code == 2
    assert "could not write checkpoint step-000000: File too large" in result.output
    run = tmp_path / "runs" / "t"
    assert list((run / "checkpoints").iterdir()) == []
    assert json.loads((run / "manifest.json").read_text())["status"] == "failed"
