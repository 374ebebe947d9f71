"""The `reward` stage on the engine: it learns from a preference file, logs its metrics, exports a folder
that `load_reward_model` reads, resumes exactly, and reports bad rows."""

import json
import shutil

import pytest
import torch
from reward_helpers import tiny_lm

from helpers import tiny_config, write_config
from trainguard import api
from trainguard.data.ai_pairs import collect_ai_pairs
from trainguard.data.collect import collect
from trainguard.errors import ConfigError, DataError
from trainguard.models.loading import export_model
from trainguard.reward import load_reward_model
from trainguard.tasks import build_task


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    collect([build_task("reverse", {"min_len": 3, "max_len": 5})], 160, path, pairs=True)
    return path


def reward_run(tmp_path, pairs, steps=12, **stage):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(tmp_path / "runs")
    cfg["stages"] = [
        {
            "name": "rm",
            "objective": {"name": "reward", **stage.pop("objective", {})},
            "source": {"name": "pairs", "data": {"sources": [{"path": str(pairs)}], "eval_fraction": 0.2}},
            "max_steps": steps,
            "batch_size": 8,
            "optimizer": {"lr": 1e-3},
            "eval_every": 6,
            "save_every": 6,
            "save_total_limit": None,
            **stage,
        }
    ]
    return write_config(tmp_path / "rm.yaml", cfg)


def test_the_stage_logs_reward_metrics_and_exports_a_reward_model(tmp_path, pairs):
    result = api.run(reward_run(tmp_path, pairs), overwrite=True)
    keys = {row["key"] for row in api.metrics(result)}
    for key in (
        "reward/accuracy",
        "reward/margin",
        "reward/eval_accuracy",
        "reward/eval_chosen_std",
        "reward/eval_rejected_mean",
        "reward/eval_length_corr",
        "loss/eval",
    ):
        assert key in keys, key
    model, tok = load_reward_model(result.final)
    rewards = model.get_rewards(["reverse: abc\n", "reverse: abc\n"], ["cba", "cab"], tok)
    assert rewards.shape == (2,) and torch.isfinite(rewards).all()
    last = {r["key"]: r["value"] for r in api.metrics(result) if r["step"] == 12}
    assert 0.0 <= last["reward/eval_accuracy"] <= 1.0


def test_a_crash_after_a_checkpoint_resumes_to_the_same_reward_head(tmp_path, pairs):
    straight = api.run(reward_run(tmp_path, pairs), overwrite=True)
    crashed = tmp_path / "crashed"
    shutil.copytree(straight.path, crashed)
    manifest = json.loads((crashed / "manifest.json").read_text())
    (crashed / "manifest.json").write_text(json.dumps(manifest | {"status": "running"}))  # as a SIGKILL leaves it
    for later in ("checkpoints/step-000012", "final", "best"):
        shutil.rmtree(crashed / later)
    resumed = api.resume(crashed)
    assert resumed.status == "completed"
    a, _ = load_reward_model(straight.final)
    b, _ = load_reward_model(resumed.final)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_principle_heads_are_trained_and_exported(tmp_path, pairs):
    labelled = tmp_path / "labelled.jsonl"
    rows = [json.loads(line) for line in pairs.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["principles"] = {"truthfulness": "chosen" if i % 2 else "rejected"}
    labelled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = api.run(
        reward_run(tmp_path, labelled, steps=6, objective={"principles": ["truthfulness"]}), overwrite=True
    )
    assert (result.final / "heads" / "reward_truthfulness" / "model.safetensors").is_file()
    keys = {row["key"] for row in api.metrics(result)}
    assert "loss/principle_truthfulness" in keys or any("principle_truthfulness" in k for k in keys)
    load_reward_model(result.final, head="reward_truthfulness")


def test_bad_rows_are_reported_and_a_file_without_pairs_stops_in_one_line(tmp_path, pairs):
    mixed = tmp_path / "mixed.jsonl"
    bad = [{"prompt": "p", "response_chosen": "x", "response_rejected": "x"}, {"prompt": "p", "response_chosen": "y"}]
    mixed.write_text(pairs.read_text() + "".join(json.dumps(r) + "\n" for r in bad))
    result = api.run(reward_run(tmp_path, mixed, steps=2), overwrite=True)
    notes = [e for e in api.events(result) if "skipped" in json.dumps(e)]
    assert notes, api.events(result)
    useless = tmp_path / "useless.jsonl"
    useless.write_text("".join(json.dumps(r) + "\n" for r in bad))
    with pytest.raises((DataError, ConfigError)) as err:
        api.run(reward_run(tmp_path / "u", useless, steps=2), overwrite=True)
    assert "\n" not in str(err.value) and "chosen == rejected" in str(err.value)


@pytest.mark.slow
def test_model_made_pairs_count_what_they_cannot_decide(tmp_path, tok):
    export_model(tiny_lm(tok), tok, tmp_path / "model")
    task = build_task("reverse")
    out = tmp_path / "ai.jsonl"
    report = collect_ai_pairs([task], 1, out, tmp_path / "model", "constitution")
    # a random model never answers "A" or "B", and its gibberish trips no rule: what it could not decide is
    # counted (and says why), nothing is guessed
    assert report.bad["model comparison named neither response"] + report.bad["two identical samples"] >= 1
    assert report.bad["model verdict unparsed: the rules judged instead"] >= 1
    for row in map(json.loads, out.read_text().splitlines()):
        assert row["source"] == "constitution" and row["response_chosen"] != row["response_rejected"]
    critique = collect_ai_pairs([task], 1, tmp_path / "critique.jsonl", tmp_path / "model", "critique")
    assert critique.written + critique.bad["revision changed nothing"] >= 1
