"""The Python API on real tiny runs: results, the run folder's tables, resume, the exported model, config errors."""

import importlib.util
import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

import trainguard
from helpers import tiny_config, write_config
from trainguard.errors import ConfigError, RunDirError
from trainguard.track.store import read_metrics, read_table

EVAL = {"task": "reverse", "n": 8, "max_new_tokens": 8}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> trainguard.RunResult:
    """One tiny run of 12 steps, trained through the API and shared by the read-only tests below."""
    cfg = trainguard.load_config(tiny_config(tmp_path_factory.mktemp("api") / "runs", eval=EVAL))
    return trainguard.run(cfg)


def test_run_returns_the_stages_accuracy_and_model_folders(trained):
    path = trained.path
    assert trained.status == "completed" == json.loads((path / "manifest.json").read_text())["status"]
    assert [(s.name, s.steps) for s in trained.stages] == [("sft", 12)]
    stage = trained.stages[0]
    losses = [v for _, _, k, v, _ in read_metrics(path / "metrics.db") if k == "loss/train"]
    assert stage.last["loss/train"] == losses[-1] and stage.seconds > 0 and stage.actions == {}
    assert trained.accuracy_before == json.loads((path / "eval" / "before.json").read_text())["accuracy"]
    assert trained.accuracy_after == json.loads((path / "eval" / "after.json").read_text())["accuracy"]
    assert trained.final == path / "final" and trained.best == path / "best"


def test_metrics_rows_are_the_stores_rows(trained):
    rows = trainguard.metrics(trained)
    store = read_metrics(trained.path / "metrics.db")
    assert [(r["step"], r["stage"], r["key"], r["value"], r["time"]) for r in rows] == store
    losses = trainguard.metrics(trained.path, keys="loss/train")
    assert [r["step"] for r in losses] == list(range(1, 13))
    evals = trainguard.metrics(str(trained.path), keys=["loss/eval", "opt/lr"])
    assert {r["key"] for r in evals} == {"loss/eval", "opt/lr"} and len(evals) == 2 + 12


def test_metrics_as_a_frame_needs_pandas(trained):
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pip install pandas"):
            trainguard.metrics(trained, as_frame=True)
    else:
        frame = trainguard.metrics(trained, keys="loss/train", as_frame=True)
        assert list(frame.columns) == ["step", "stage", "key", "value", "time"]
        assert frame["step"].tolist() == list(range(1, 13))


def test_events_and_alerts_are_the_stores_tables(trained):
    db = trained.path / "metrics.db"
    events = trainguard.events(trained)
    assert [e["id"] for e in events] == [e["id"] for e in read_table(db, "events")]
    kinds = [e["kind"] for e in events]
    assert kinds.index("stage_start") < kinds.index("stage_end") and kinds.count("checkpoint") == 4  # 0, 4, 8, 12
    accuracy = [e["data"] for e in events if e["kind"] == "accuracy"]  # data comes back as a dict
    assert [(a["when"], a["accuracy"]) for a in accuracy] == [
        ("before", trained.accuracy_before),
        ("after", trained.accuracy_after),
    ]
    alerts = trainguard.alerts(trained.path)
    assert [(a["kind"], a["step"]) for a in alerts] == [(a["kind"], a["step"]) for a in read_table(db, "alerts")]
    assert all(isinstance(a["data"], dict) for a in alerts)


def test_resume_of_a_finished_run_reports_it_complete(trained):
    again = trainguard.resume(trained.path)
    assert again.status == "completed" and again.path == trained.path
    assert [(s.name, s.steps, s.last["loss/train"]) for s in again.stages] == [
        (s.name, s.steps, s.last["loss/train"]) for s in trained.stages
    ]
    assert (again.accuracy_before, again.accuracy_after) == (trained.accuracy_before, trained.accuracy_after)
    assert json.loads((trained.path / "manifest.json").read_text())["status"] == "completed"


def test_load_model_returns_a_model_that_generates(trained):
    model, tokenizer = trainguard.load_model(trained)
    assert not model.training
    prompt = tokenizer("reverse: abc\n", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, prompt["input_ids"].shape[1] :].tolist()
    assert 1 <= len(new) <= 4 and all(0 <= t < model.config.vocab_size for t in new)
    same, _ = trainguard.load_model(trained.path / "final")  # a model folder given directly
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values(), strict=True))
    best, _ = trainguard.load_model(trained.path, which="best")
    assert best.config.vocab_size == model.config.vocab_size
    with pytest.raises(RunDirError, match="holds no model"):
        trainguard.load_model(trained.path, which="nope")


def test_a_bad_dict_raises_config_error_naming_the_field(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"][0]["batch_size"] = "many"
    with pytest.raises(ConfigError, match=r"config: stages\.0\.batch_size: "):
        trainguard.load_config(cfg)
    with pytest.raises(ConfigError, match=r"expected KEY\.PATH=VALUE"):
        trainguard.load_config(tiny_config(tmp_path / "runs"), ["stages.0.max_steps"])


def test_overrides_and_files_give_the_same_config_as_a_dict(tmp_path):
    cfg = tiny_config(tmp_path / "runs")
    loaded = trainguard.load_config(cfg, ["stages.0.max_steps=5"])
    assert loaded.stages[0].max_steps == 5 and cfg["stages"][0]["max_steps"] == 12  # the caller's dict is kept
    from_file = trainguard.load_config(write_config(tmp_path / "run.yaml", cfg))
    assert from_file.model_dump() == trainguard.load_config(cfg).model_dump()


def test_run_refuses_an_existing_folder_or_a_changed_config(trained):
    cfg = tiny_config(trained.path.parent, eval=EVAL)
    with pytest.raises(RunDirError, match="already exists"):
        trainguard.run(cfg)
    with pytest.raises(RunDirError, match=r"stages\.0\.optimizer\.lr"):
        trainguard.run(cfg, resume=True, overrides=["stages.0.optimizer.lr=0.1"])


def test_import_trainguard_loads_neither_torch_nor_transformers():
    code = "import sys, trainguard; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_trainguard_run_is_the_function():
    from trainguard.rundir import RunDir  # the run folder's module has its own name

    assert trainguard.run is trainguard.api.run and RunDir.__module__ == "trainguard.rundir"


def test_cli_version_prints_the_package_version():
    from trainguard.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"trainguard {trainguard.__version__}\n"


def test_a_run_gives_the_caller_its_torch_settings_back(tmp_path):
    torch.use_deterministic_algorithms(False)
    threads = torch.get_num_threads()
    cfg = tiny_config(
        tmp_path, run={"name": "t", "seed": 0, "out_dir": str(tmp_path), "threads": 1, "deterministic": True}
    )
    cfg["stages"][0]["max_steps"] = 2
    trainguard.run(cfg)
    assert not torch.are_deterministic_algorithms_enabled()  # the run had it on; the notebook gets it back off
    assert torch.get_num_threads() == threads
