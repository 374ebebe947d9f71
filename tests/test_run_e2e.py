"""End-to-end runs of the tiny model through the CLI, in-process: the run folder, metrics and exports."""

import json
import shutil
import sqlite3
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.track.store import read_metrics

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def metric(run: Path, key: str) -> list[tuple[int, float]]:
    return [(s, v) for s, _, k, v, _ in read_metrics(run / "metrics.db") if k == key]


def test_sft_run_fills_the_run_folder_and_learns(make_config, tmp_path):
    cfg = make_config(
        tracking={"tensorboard": True, "progress": "off"},
        eval={"task": "reverse", "n": 16, "max_new_tokens": 8},
        stages=[
            {
                "name": "sft",
                "objective": "sft",
                "max_steps": 30,
                "batch_size": 16,
                "optimizer": {"lr": 3e-3},
                "schedule": {"warmup_steps": 3},
                "eval_every": 10,
                "save_every": 10,
                "save_total_limit": 2,
            }
        ],
    )
    result = invoke("run", str(cfg))
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    assert {p.name for p in run.iterdir()} >= {
        "config.yaml",
        "manifest.json",
        "metrics.db",
        "events.jsonl",
        "checkpoints",
        "final",
        "best",
        "eval",
    }
    assert json.loads((run / "manifest.json").read_text())["status"] == "completed"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000020", "step-000030"]

    losses = [v for _, v in metric(run, "loss/train")]
    assert len(losses) == 30 and sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    assert [s for s, _ in metric(run, "loss/eval")] == [10, 20, 30]
    for key in (
        "opt/lr",
        "grad/norm",
        "grad/max",
        "grad/nan_count",
        "grad/inf_count",
        "weights/norm",
        "weights/update_ratio",
        "perf/tokens_per_s",
        "perf/step_time_s",
    ):
        assert len(metric(run, key)) == 30, key
    assert all(v == 0 for _, v in metric(run, "grad/nan_count"))
    lr = [v for _, v in metric(run, "opt/lr")]
    assert lr[0] == 1e-3 and abs(lr[2] - 3e-3) < 1e-12 and abs(lr[-1] - 3e-4) < 1e-12
    assert list((run / "tb").glob("events.out.tfevents.*"))
    with sqlite3.connect(run / "metrics.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # the export is a plain Hugging Face folder whose weights differ from the seeded init
    model = AutoModelForCausalLM.from_pretrained(run / "final", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(run / "final", local_files_only=True)
    assert tok.eos_token_id == model.config.eos_token_id == 258
    init = load_file(run / "checkpoints" / "step-000020" / "model.safetensors")
    final = model.state_dict()
    assert not torch.equal(init["model.layers.0.mlp.up_proj.weight"], final["model.layers.0.mlp.up_proj.weight"])
    before = json.loads((run / "eval" / "before.json").read_text())
    after = json.loads((run / "eval" / "after.json").read_text())
    assert before["n"] == after["n"] == 16 and 0 <= after["accuracy"] <= 1
    kinds = [json.loads(line)["kind"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert kinds.count("checkpoint") == 4 and "stage_end" in kinds  # steps 0 (rollback target), 10, 20, 30

    again = invoke("run", str(cfg))
    assert again.exit_code == 2 and "already exists" in again.output
    csv_path = tmp_path / "m.csv"
    exported = invoke("export", str(run), "--csv", str(csv_path))
    assert exported.exit_code == 0
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 31 and lines[0].startswith("stage,step,time,loss/train")

    inspected = invoke("inspect", str(run / "checkpoints" / "step-000030"))
    assert inspected.exit_code == 0 and "model.safetensors" in inspected.output and "MISMATCH" not in inspected.output
    blob = run / "checkpoints" / "step-000030" / "state.pt"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    inspected = invoke("inspect", str(run / "checkpoints" / "step-000030"))
    assert inspected.exit_code == 1 and "MISMATCH" in inspected.output
    done = invoke("resume", str(run))
    assert done.exit_code == 0 and "already complete" in done.output


def test_resume_after_losing_the_tail_reproduces_the_run_exactly(make_config, tmp_path):
    """In-process: drop the last checkpoint and everything after it, resume, compare bit for bit."""
    cfg = make_config()
    assert invoke("run", str(cfg)).exit_code == 0
    run = tmp_path / "runs" / "t"
    want_weights = load_file(run / "final" / "model.safetensors")
    want = [(s, k, v) for s, _, k, v, _ in read_metrics(run / "metrics.db") if not k.startswith("perf/")]
    shutil.rmtree(run / "checkpoints" / "step-000012")
    shutil.rmtree(run / "final")
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "status": "running"}))
    result = invoke("run", str(cfg), "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming from step-000008" in result.output
    got_weights = load_file(run / "final" / "model.safetensors")
    assert all(torch.equal(got_weights[k], want_weights[k]) for k in want_weights)
    got = [(s, k, v) for s, _, k, v, _ in read_metrics(run / "metrics.db") if not k.startswith("perf/")]
    assert got == want


def test_resume_refuses_a_changed_config(make_config, tmp_path):
    cfg = make_config()
    assert invoke("run", str(cfg)).exit_code == 0
    result = invoke("run", str(cfg), "--resume", "--set", "stages.0.optimizer.lr=0.1")
    assert result.exit_code == 2 and "stages.0.optimizer.lr" in result.output


def test_two_stages_hand_over_by_folder(make_config, tmp_path):
    stage = {"objective": "sft", "max_steps": 4, "batch_size": 4, "eval_every": 4, "save_every": 4}
    cfg = make_config(stages=[{"name": "a", **stage}, {"name": "b", **stage, "optimizer": {"lr": 1e-3}}])
    result = invoke("run", str(cfg))
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    a = load_file(run / "exports" / "a" / "model.safetensors")
    b = load_file(run / "final" / "model.safetensors")
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])
    steps = {(st, s) for s, st, k, _, _ in read_metrics(run / "metrics.db") if k == "loss/train"}
    assert steps == {("a", s) for s in range(1, 5)} | {("b", s) for s in range(5, 9)}
    ckpt = json.loads((run / "checkpoints" / "step-000008" / "manifest.json").read_text())
    assert ckpt["stage"] == "b" and ckpt["stage_index"] == 1


def test_lora_trains_only_adapters_and_exports_a_merged_model(make_config, tmp_path):
    cfg = make_config(model={"preset": "tiny", "lora": {"r": 4, "alpha": 8, "dropout": 0.0}})
    result = invoke("run", str(cfg))
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "t"
    saved = load_file(run / "checkpoints" / "step-000012" / "model.safetensors")
    assert saved and all("lora_" in k for k in saved)
    assert (run / "final" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(run / "final", local_files_only=True)
    assert not any("lora" in k for k in merged.state_dict())


def test_a_local_hugging_face_folder_is_a_model(make_config, tmp_path):
    first = make_config()
    assert invoke("run", str(first)).exit_code == 0
    model_dir = tmp_path / "runs" / "t" / "final"
    second = make_config("second.yaml", run={"name": "from-path"}, model={"preset": None, "path": str(model_dir)})
    result = invoke("run", str(second))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "from-path" / "final" / "tokenizer.json").is_file()


def test_a_finished_run_is_extended_by_more_steps_on_its_last_stage(make_config, tmp_path):
    cfg = make_config()
    assert invoke("run", str(cfg)).exit_code == 0
    run = tmp_path / "runs" / "t"
    before = load_file(run / "final" / "model.safetensors")
    result = invoke("run", str(cfg), "--resume", "--set", "stages.0.max_steps=16")
    assert result.exit_code == 0, result.output
    assert "extending stage sft from 12 to 16 steps" in result.output
    steps = sorted({s for s, _, k, _, _ in read_metrics(run / "metrics.db") if k == "loss/train"})
    assert steps == list(range(1, 17))
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["extended"] == [{"stage": "sft", "from": 12, "to": 16}]
    after = load_file(run / "final" / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)  # final/ is the longer run's model
    assert invoke("resume", str(run)).output.strip().endswith("already complete; nothing to do")
    refused = invoke("run", str(cfg), "--resume", "--set", "stages.0.max_steps=8")
    assert refused.exit_code == 2 and "longer max_steps for the last stage" in refused.output


def test_a_preset_run_with_default_warmup_extends_and_later_stages_keep_the_seed_lr(make_config, tmp_path):
    from trainguard.config import load_config

    stages = [{"name": "one", "objective": "sft", "max_steps": 20, "batch_size": 8, "save_every": 10}]
    two = {"name": "two", "objective": "sft", "max_steps": 4}  # starts from stage one's export
    resolved = load_config(make_config("two.yaml", stages=[*stages, two]))
    assert resolved.stages[0].optimizer.lr == 3e-3 and resolved.stages[0].schedule.warmup_steps == 2
    assert resolved.stages[1].optimizer.lr == 2e-5  # fine-tunes stage one's model: the seed default
    cfg = make_config(stages=stages)
    assert invoke("run", str(cfg)).exit_code == 0
    result = invoke("run", str(cfg), "--resume", "--set", "stages.0.max_steps=30")
    assert result.exit_code == 0, result.output  # the warm-up derived from the length (2 -> 3) does not block it
    saved = load_config(tmp_path / "runs" / "t" / "config.yaml").stages[0]
    assert (saved.max_steps, saved.schedule.warmup_steps) == (30, 2)  # the run had warmed up already
