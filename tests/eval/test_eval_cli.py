"""`trainguard eval` and `trainguard compare` through the CLI, in-process."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
from typer.testing import CliRunner

from helpers import tiny_config, write_config
from trainguard.cli import app
from trainguard.eval.stats import interval
from trainguard.tasks import build_task

STAT_KEYS = {"n", "sum", "mean", "std", "median", "accuracy", "success_rate", "ci80"}


def write_result(path: Path, **tasks: tuple[int, float]) -> Path:
    path.write_text(json.dumps({"model": path.stem, "tasks": {t: {"n": n, "sum": s} for t, (n, s) in tasks.items()}}))
    return path


def test_eval_writes_stats_the_samples_file_reproduces(tmp_path, model_folder):
    out, rows_path = tmp_path / "out" / "eval.json", tmp_path / "samples.jsonl"
    args = ["eval", str(model_folder), "--tasks", "reverse,sort", "--n", "8", "--json", str(out)]
    result = CliRunner().invoke(app, [*args, "--samples", str(rows_path), "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert set(saved) == {"model", "tasks", "aggregate"} and saved["model"] == str(model_folder)
    assert list(saved["tasks"]) == ["reverse", "sort"] and set(saved["aggregate"]) == STAT_KEYS
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert all(set(r) == {"task", "id", "prompt", "response", "score"} for r in rows)
    scores = defaultdict(list)
    for r in rows:
        scores[r["task"]].append(r["score"])
    for task, stats in saved["tasks"].items():
        assert set(stats) == STAT_KEYS
        assert stats["n"] == len(scores[task]) == 8
        assert stats["sum"] == pytest.approx(sum(scores[task]))
        assert stats["ci80"] == pytest.approx(interval(8, sum(scores[task])))
    assert saved["aggregate"]["n"] == 16 and saved["aggregate"]["sum"] == pytest.approx(sum(r["score"] for r in rows))
    assert {r["id"] for r in rows if r["task"] == "reverse"} == set(range(1_000_000_000, 1_000_000_008))
    assert "reverse" in result.stdout and "all" in result.stdout

    again = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "b.json"), "--baseline", str(out)])
    assert again.exit_code == 0, again.output
    deltas = [line for line in again.stdout.splitlines() if "Δ" in line and "+0.0pp" in line]
    assert len(deltas) == 3 and all("+0.000" in line and "overlaps" in line for line in deltas)  # same seed: no change
    other_seed = CliRunner().invoke(
        app, [*args[:-1], str(tmp_path / "c.json"), "--samples", str(rows_path), "--seed", "1"]
    )
    assert other_seed.exit_code == 0, other_seed.output
    assert {json.loads(line)["id"] for line in rows_path.read_text().splitlines()} == {
        1_010_000_000 + k for k in range(8)
    }


def test_eval_rejects_bad_input_with_exit_2(tmp_path, model_folder):
    runner = CliRunner()
    unknown = runner.invoke(app, ["eval", str(model_folder), "--tasks", "reverse,chess", "--json", "o.json"])
    assert unknown.exit_code == 2 and "unknown task 'chess'" in unknown.stderr and "sat" in unknown.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    failed = runner.invoke(app, ["eval", str(broken), "--tasks", "reverse", "--json", str(tmp_path / "o.json")])
    assert failed.exit_code == 2 and f"cannot load the model in {broken}" in failed.stderr
    baseline = write_result(tmp_path / "old.json")
    baseline.write_text(json.dumps({"accuracy": 0.5}))
    args = ["eval", str(model_folder), "--tasks", "reverse", "--json", "o.json", "--baseline", str(baseline)]
    bad_baseline = runner.invoke(app, args)
    assert bad_baseline.exit_code == 2 and "not a trainguard eval result" in bad_baseline.stderr


def test_compare_json_names_skipped_files_and_unshared_tasks(tmp_path):
    a = write_result(tmp_path / "old.json", x=(10, 5), y=(10, 5))
    b = write_result(tmp_path / "new.json", x=(200, 150), z=(10, 1))
    bad = tmp_path / "notes.json"
    bad.write_text(json.dumps({"tasks": {"x": {"n": 10}}}))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), str(bad), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["winners"] == {"x": "new"} and out["dominance"] == [["new", "old"]] and out["frontier"] == ["new"]
    assert [round(v, 4) for v in out["intervals"]["old"]["x"]] == [0.3099, 0.6901]
    assert "no sum" in out["skipped"][str(bad)]
    assert out["unshared"] == {"old": ["y"], "new": ["z"]}
    assert f"{bad}" in result.stderr and "skipped" in result.stderr
    assert "old: not compared" in result.stderr and "new: not compared" in result.stderr


def test_compare_table_and_min_samples(tmp_path):
    a = write_result(tmp_path / "a.json", x=(10, 5))
    b = write_result(tmp_path / "b.json", x=(200, 110))
    result = CliRunner().invoke(app, ["compare", str(a), str(b), "--min-samples", "50"])
    assert result.exit_code == 0, result.output
    assert "frontier: b" in result.stdout and "dominance: b > a" in result.stdout


def test_compare_needs_two_results_and_a_shared_task(tmp_path):
    a = write_result(tmp_path / "a.json", x=(10, 5))
    lonely = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "missing.json")])
    assert lonely.exit_code == 2 and "missing.json" in lonely.stderr and "at least two" in lonely.stderr
    b = write_result(tmp_path / "b.json", y=(10, 5))
    disjoint = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert disjoint.exit_code == 2 and "no task is in every result" in disjoint.stderr


@pytest.mark.slow
def test_eval_of_a_trained_run_folder_prints_the_stage_and_its_stats_match_the_samples(tmp_path):
    params = {"min_len": 2, "max_len": 3}
    cfg = tiny_config(tmp_path / "runs", data={"sources": [{"task": "reverse", "n": 2000, "params": params}]})
    cfg["stages"][0] |= {"max_steps": 150, "batch_size": 32, "eval_every": 150, "save_every": 150}
    cfg["stages"][0]["schedule"] = {"warmup_steps": 10}
    trained = CliRunner().invoke(app, ["run", str(write_config(tmp_path / "run.yaml", cfg))])
    assert trained.exit_code == 0, trained.output
    run, out, rows_path = tmp_path / "runs" / "t", tmp_path / "e.json", tmp_path / "s.jsonl"
    args = ["eval", str(run), "--tasks", "reverse", "--n", "16", "--json", str(out), "--samples", str(rows_path)]
    result = CliRunner().invoke(app, [*args, "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    assert "evaluating stage sft (sft)" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["model"] == str(run / "final")
    task = build_task("reverse", params)  # the run's parameters, not the task's defaults
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    for row in rows:  # each score is the verifier's on that response
        assert row["score"] == task.score(task.instance(row["id"]), row["response"]).value
    scores = [r["score"] for r in rows]
    stats = saved["tasks"]["reverse"]
    assert stats["n"] == len(rows) == 16 and stats["sum"] == sum(scores) > 0  # trained: some answers right
    assert stats["accuracy"] == sum(s > 0.5 for s in scores) / 16
    assert stats["ci80"] == pytest.approx(interval(16, sum(scores)))
    seen = {task.instance(i).prompt for i in range(2000)}
    assert not {r["prompt"] for r in rows} & seen
    assert all(2 <= len(r["prompt"].removeprefix("reverse: ").strip()) <= 3 for r in rows)
