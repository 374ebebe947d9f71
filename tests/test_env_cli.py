"""Text environments through the CLI: `tasks baseline ENV`, `data collect` of expert episodes (resumable) and
`eval --tasks ENV,...` playing held-out episodes, with the Affine guide's spellings accepted everywhere."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.data.collect import EnvSpec, collect_episodes
from trainguard.eval.runner import trained_on
from trainguard.eval.stats import interval
from trainguard.tasks.envs import make, run_episode
from trainguard.tasks.envs.play import expert_episodes, random_baseline, sft_records

runner = CliRunner()
STAT_KEYS = {"n", "sum", "mean", "std", "median", "accuracy", "success_rate", "ci80"}


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_baseline_of_an_environment_prints_the_random_valid_action_numbers():
    result = runner.invoke(app, ["tasks", "baseline", "agentgym:textcraft", "--n", "200", "--param", "max_depth=1"])
    assert result.exit_code == 0, result.output
    expected = random_baseline("textcraft", 200, max_depth=1)
    assert expected["successes"] == 58
    line = next(line for line in result.output.splitlines() if "random valid │" in line)
    lo, hi = expected["ci80"]
    assert "58 (29.0%)" in line and f"[{lo:.3f}, {hi:.3f}]" in line and f"{expected['rounds_mean']:.2f}" in line
    bad = runner.invoke(app, ["tasks", "baseline", "textcraft", "--n", "5", "--param", "max_depth=9"])
    assert bad.exit_code == 2 and "max_depth" in bad.output


def test_collect_writes_expert_sft_rows_and_episode_records_and_resumes(tmp_path):
    out = tmp_path / "demos.jsonl"
    args = ["data", "collect", "--tasks", "textcraft,agentgym:webshop", "--n", "4", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "4 episodes written" in result.output
    written = rows(out)
    expected = [sft_records(expert_episodes(env, [s])[0]) for s, env in [(0, "textcraft"), (0, "webshop")]]
    expected += [sft_records(expert_episodes(env, [s])[0]) for s, env in [(1, "textcraft"), (1, "webshop")]]
    assert written == [row for episode in expected for row in episode]
    assert all(set(r) == {"id", "task", "prompt", "completion"} for r in written)

    text = out.read_text()
    out.write_text(text[: text.index("\n", len(text) // 2) + 15])  # a kill mid-episode, mid-line
    report = collect_episodes([EnvSpec("textcraft"), EnvSpec("webshop")], 4, out)
    assert report.torn_tail and report.resumed + report.written == 4 and report.written >= 1
    assert rows(out) == written  # the half-written episode completed, nothing twice

    episodes = tmp_path / "episodes.jsonl"
    result = runner.invoke(app, [*args[:-1], str(episodes), "--episodes", "--n", "3"])
    assert result.exit_code == 0, result.output
    records = rows(episodes)
    assert [(r["id"], r["env"], r["seed"], r["success"]) for r in records] == [
        ("textcraft-0", "textcraft", 0, True),
        ("webshop-0", "webshop", 0, True),
        ("textcraft-1", "textcraft", 1, True),
    ]
    assert {k: v for k, v in records[0].items() if k != "id"} == expert_episodes("textcraft", [0])[0]

    mixed = runner.invoke(
        app, ["data", "collect", "--tasks", "sat,textcraft", "--n", "2", "--out", str(tmp_path / "m")]
    )
    assert mixed.exit_code == 2 and "mixes tasks and environments" in mixed.output
    other_kind = runner.invoke(app, [*args, "--episodes"])
    assert other_kind.exit_code == 2 and "holds SFT rows" in other_kind.output


def test_eval_plays_environments_and_its_stats_match_the_episode_samples(tmp_path, model_folder):
    out, samples = tmp_path / "eval.json", tmp_path / "samples.jsonl"
    args = ["eval", str(model_folder), "--tasks", "agentgym:textcraft,webshop,sort", "--n", "4", "--json", str(out)]
    result = runner.invoke(app, [*args, "--samples", str(samples), "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert set(saved["tasks"]) == {"textcraft", "webshop", "sort"} and set(saved["aggregate"]) == STAT_KEYS
    played = rows(samples)
    for env in ("textcraft", "webshop"):
        episodes = [r for r in played if r["task"] == env]
        assert [r["seed"] for r in episodes] == list(range(1_000_000_000, 1_000_000_004))
        assert all(set(r) == {"task", "env", "seed", "turns", "return", "success", "score"} for r in episodes)
        assert all(len(r["turns"]) <= 10 and r["score"] == float(r["success"]) for r in episodes)
        stats = saved["tasks"][env]
        assert set(stats) == STAT_KEYS | {"return_mean", "rounds_mean"}
        assert stats["n"] == 4 and stats["sum"] == sum(r["score"] for r in episodes)
        assert stats["ci80"] == pytest.approx(interval(4, stats["sum"]))
        assert stats["return_mean"] == pytest.approx(sum(r["return"] for r in episodes) / 4)
        assert stats["rounds_mean"] == pytest.approx(sum(len(r["turns"]) for r in episodes) / 4)
        for r in episodes:  # each sample is the episode the environment gives for those replies, at 10 rounds
            replies = iter(t["action"] for t in r["turns"])
            replay = run_episode(make(env, r["seed"], max_rounds=10), lambda _t, it=replies: next(it))
            assert replay == {k: v for k, v in r.items() if k not in ("task", "score")}
    assert saved["aggregate"]["n"] == 12 and saved["aggregate"]["sum"] == pytest.approx(sum(r["score"] for r in played))
    assert "textcraft: episode success is the score" in result.output
    bad = runner.invoke(app, ["eval", str(model_folder), "--tasks", "agentgym:chess", "--json", str(out)])
    assert bad.exit_code == 2 and "agentgym:textcraft" in bad.output


def test_a_runs_episode_source_gives_the_environment_its_params(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    source = {"name": "episodes", "env": "textcraft", "params": {"max_depth": 1}}
    config = {"data": {"sources": [{"task": "sort", "n": 4}]}, "stages": [{"name": "rl", "source": source}]}
    (run / "config.yaml").write_text(json.dumps(config))
    seen = trained_on(run, ["textcraft", "sort"])
    assert seen.params == {"textcraft": {"max_depth": 1}, "sort": {}}
    assert trained_on(run, ["sort"]).params == {"sort": {}}
