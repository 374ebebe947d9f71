"""Misconfigurations a new user hits are named: a warm-up longer than the stage, a fault that can never fire,
activation checks that watch nothing; presets get an LR that trains them; every run says what it trains."""

import pytest
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.config import load_config
from trainguard.errors import ConfigError
from trainguard.guard.activations import ActivationConfig, ActivationMonitor
from trainguard.rundir import RunDir  # noqa: F401  (the run folder module imports cleanly)
from trainguard.track.store import read_table


def test_a_preset_stage_without_an_lr_gets_the_presets_and_a_proportionate_warmup(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0].pop("optimizer")
    cfg["stages"][0].pop("schedule")
    loaded = load_config(write_config(tmp_path / "run.yaml", cfg))
    assert loaded.stages[0].optimizer.lr == 3e-3 and loaded.stages[0].schedule.warmup_steps == 1  # 12 // 10
    cfg["model"] = {"preset": "small"}
    cfg["stages"][0]["optimizer"] = {"lr": 5e-4}
    loaded = load_config(write_config(tmp_path / "run.yaml", cfg))
    assert loaded.stages[0].optimizer.lr == 5e-4  # what the user set stays


def test_a_fault_after_the_last_step_is_a_config_error(tmp_path):
    cfg = tiny_config(tmp_path / "runs", faults=[{"kind": "nan_loss", "at_step": 500}])
    with pytest.raises(ConfigError, match=r"faults\.0\.at_step: 500 is after the run's last step \(12\)"):
        load_config(write_config(tmp_path / "run.yaml", cfg))


def test_a_run_says_what_it_trains_and_warns_of_a_warmup_longer_than_the_stage(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["schedule"] = {"warmup_steps": 50}
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0, result.output
    assert "stage sft: 0.87M parameters, 100.0% trainable; 360 train / 40 eval records; 12 steps" in result.output
    events = read_table(tmp_path / "runs" / "t" / "metrics.db", "events")
    warned = [e["message"] for e in events if e["kind"] == "config"]
    assert warned and "warmup_steps=50 is not shorter than the stage (12 steps)" in warned[0]


def test_activation_checks_find_gpt2s_mlp_and_say_when_they_watch_nothing(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=16, n_embd=32, n_layer=2, n_head=2))
    assert [n for n, _ in ActivationMonitor(ActivationConfig()).watched(gpt2)] == [
        "transformer.h.0.mlp.act", "transformer.h.1.mlp.act",
    ]  # fmt: skip
    cfg = tiny_config(tmp_path / "runs", guard={"activations": {"modules": ["mlp.nothing"]}})
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0 and "activation checks are off" in result.output


def test_without_a_terminal_a_run_prints_progress_lines(tmp_path):
    cfg = tiny_config(tmp_path / "runs", tracking={"tensorboard": False, "progress": "off", "log_every": 4})
    result = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert result.exit_code == 0
    lines = [line for line in result.output.splitlines() if line.startswith("sft step ")]
    assert [line.split()[2] for line in lines] == ["4/12", "8/12", "12/12"] and "tok/s" in lines[0]


def test_monitor_appends_snapshots_to_a_pipe_while_the_run_is_live(tmp_path):
    import io
    import json
    import threading
    import time

    from rich.console import Console

    from trainguard.atomic import atomic_write_json
    from trainguard.ui.monitor import watch

    config = write_config(tmp_path / "run.yaml", tiny_config(tmp_path / "runs"))
    assert CliRunner().invoke(app, ["run", str(config)]).exit_code == 0
    run = tmp_path / "runs" / "t"
    manifest = json.loads((run / "manifest.json").read_text())
    atomic_write_json(run / "manifest.json", {**manifest, "status": "running"})  # the watcher reads it meanwhile
    out = io.StringIO()
    watcher = threading.Thread(target=watch, args=(run, Console(file=out, width=120), 0.05), daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)
        shown_live = out.getvalue()
    finally:  # the watcher ends once the run is no longer running, whatever the assertion says
        atomic_write_json(run / "manifest.json", {**manifest, "status": "completed"})
    assert "status running" in shown_live  # shown while live, not only when it ends
    watcher.join(timeout=10)
    assert not watcher.is_alive()
