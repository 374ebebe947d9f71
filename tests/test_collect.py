"""`data collect`: verified SFT records and preference pairs, resumable, with bad and duplicate rows counted."""

import json
import random
from pathlib import Path

from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.data.collect import collect
from trainguard.tasks import build_task
from trainguard.track.store import read_metrics

runner = CliRunner()


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_collect_writes_verified_records_and_resumes_after_a_torn_write(tmp_path):
    out = tmp_path / "data.jsonl"
    result = runner.invoke(app, ["data", "collect", "--tasks", "sat,abd,ded", "--n", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "30 written" in result.output
    first = rows(out)
    assert [r["task"] for r in first[:6]] == ["sat", "abd", "ded"] * 2
    assert all(set(r) == {"id", "task", "prompt", "completion"} for r in first)
    tasks = {name: build_task(name) for name in ("sat", "abd", "ded")}
    for r in random.Random(0).sample(first, 9):
        task = tasks[r["task"]]
        inst = task.instance(int(r["id"].rsplit("-", 1)[1]))
        assert inst.prompt == r["prompt"] and task.score(inst, r["completion"]).value == 1.0

    text = out.read_text()
    cut = text.index("\n", len(text) // 2) + 20  # a kill mid-line leaves a torn last row
    out.write_text(text[:cut])
    report = collect(list(tasks.values()), 30, out, workers=2)
    assert report.torn_tail and report.resumed + report.written == 30 and report.written >= 10
    assert rows(out) == first  # same ids, same order, nothing twice


def test_pairs_have_a_right_chosen_and_a_wrong_rejected(tmp_path):
    out = tmp_path / "pairs.jsonl"
    result = runner.invoke(
        app, ["data", "collect", "--tasks", "sat,abd,ded", "--n", "9", "--out", str(out), "--pairs", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    pairs = rows(out)
    assert len(pairs) == 9 and all(r["id"].endswith(f"-{3 * 10**7 + i // 3}") for i, r in enumerate(pairs))
    for r in pairs:
        task = build_task(r["task"])
        inst = task.instance(int(r["id"].rsplit("-", 1)[1]))
        assert task.score(inst, r["response_chosen"]).value == 1.0
        assert task.score(inst, r["response_rejected"]).value == 0.0
        assert r["response_chosen"] != r["response_rejected"]


def test_duplicates_and_rows_without_a_reference_are_counted(tmp_path):
    out = tmp_path / "dup.jsonl"
    words = build_task("reverse", {"min_len": 1, "max_len": 1, "alphabet": "ab"})
    report = collect([words], 12, out)  # only two distinct prompts exist: draws stop at 10 per row asked for
    assert report.written == 2 and report.duplicates == 12 * 10 - 2
    assert "SHORT: 10 rows missing" in report.summary()
    tests = [{"input": "1", "output": "1"}]
    (tmp_path / "ded.jsonl").write_text(json.dumps({"statement": "Echo.", "tests": tests}) + "\n")
    unsolved = build_task("ded", {"path": str(tmp_path / "ded.jsonl")})
    report = collect([unsolved], 3, tmp_path / "none.jsonl")
    assert report.written == 0 and report.bad == {"no reference answer": 3 * 10}
    result = runner.invoke(app, ["data", "collect", "--tasks", "sat,nope", "--n", "3", "--out", str(out)])
    assert result.exit_code == 2 and "allowed: abd, bash_command, chain_of_thought, ded," in result.output


def test_a_run_trains_on_collected_data(make_config, tmp_path):
    data = tmp_path / "reasoning.jsonl"
    collect([build_task(name) for name in ("sat", "abd", "ded")], 48, data)
    cfg = make_config(
        tokenizer={"max_length": 1024},
        data={"sources": [{"path": str(data)}]},
        stages=[
            {
                "name": "sft",
                "objective": "sft",
                "max_steps": 12,
                "batch_size": 4,
                "optimizer": {"lr": 3e-3},
                "schedule": {"warmup_steps": 2},
                "eval_every": 12,
                "save_every": 12,
            }
        ],
    )
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 0, result.output
    losses = [v for _, _, k, v, _ in read_metrics(tmp_path / "runs" / "t" / "metrics.db") if k == "loss/train"]
    assert len(losses) == 12 and sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
