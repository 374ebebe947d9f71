"""A rollback happens before anything else of the bad step is kept: no further update, no checkpoint, no
TensorBoard row; its event carries the onset step; a resume does not record data alerts twice."""

import json
import shutil

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.track.store import read_table


def lr_spike_run(tmp_path, **extra):
    cfg = tiny_config(tmp_path / "runs", faults=[{"kind": "lr_spike", "at_step": 8, "magnitude": 300.0}], **extra)
    cfg["stages"][0] |= {"max_steps": 12, "save_every": 4, "optimizer": {"lr": 1e-3}}
    cfg["tracking"] = {"tensorboard": True, "progress": "off"}
    cfg["guard"] = {"detectors": {"update_ratio": {"warn_factor": 20.0}}}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    return tmp_path / "runs" / "t"


def test_a_post_update_alert_at_a_save_step_rolls_back_before_the_checkpoint(tmp_path):
    run = lr_spike_run(tmp_path)
    events = read_table(run / "metrics.db", "events")
    actions = [e for e in events if e["kind"] == "action"]
    assert [e["message"].split(" (")[0] for e in actions] == ["rollback to step-000004 at step 8"]
    assert actions[0]["step"] == 8  # the row's step is the onset the message names
    saves = [e["message"] for e in events if e["kind"] == "checkpoint"]
    assert not any("not healthy" in m for m in saves), saves  # step 8 was never saved before the rollback
    assert "update_ratio" in actions[0]["message"]


def test_rolled_back_steps_leave_tensorboard_as_they_leave_the_store(tmp_path):
    run = lr_spike_run(tmp_path)
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("loss/train")]
    assert steps == list(range(1, 13)), steps  # each step once: the rolled-back 5..8 were purged


def test_a_resume_records_the_data_alerts_once(tmp_path):
    rows = [{"prompt": f"reverse: w{i}", "completion": f"{i}w"} for i in range(40)] * 2  # every row twice
    data = tmp_path / "twice.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = tiny_config(tmp_path / "runs", data={"sources": [{"path": str(data)}]})
    path = write_config(tmp_path / "run.yaml", cfg)
    assert CliRunner().invoke(app, ["run", str(path)]).exit_code == 0
    run = tmp_path / "runs" / "t"
    shutil.rmtree(run / "checkpoints" / "step-000012")
    shutil.rmtree(run / "final")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    assert CliRunner().invoke(app, ["run", str(path), "--resume"]).exit_code == 0
    kinds = [a["kind"] for a in read_table(run / "metrics.db", "alerts")]
    assert kinds.count("duplicates") == 1, kinds
