"""A two-stage curriculum on the tiny model: each stage's mix of reverse and sort, per-task losses in the store."""

import json

import trainguard
from helpers import tiny_config

WORDS = {"min_len": 3, "max_len": 6}


def stage(name: str, weights: dict[str, float], **extra: object) -> dict:
    return {
        "name": name,
        "objective": "sft",
        "source": {"name": "mix", "weights": weights, **extra},
        "max_steps": 30,
        "batch_size": 8,
        "optimizer": {"lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "eval_every": 30,
        "save_every": 30,
    }


def test_a_curriculum_changes_the_task_shares_and_logs_each_tasks_loss(tmp_path):
    data = {"sources": [{"task": "reverse", "n": 300, "params": WORDS}, {"task": "sort", "n": 300, "params": WORDS}]}
    stages = [
        stage("words", {"reverse": 0.8, "sort": 0.2}),
        stage("sorting", {"reverse": 0.2, "sort": 0.8}, hard={"fraction": 0.25}),
    ]
    result = trainguard.run(tiny_config(tmp_path / "runs", data=data, stages=stages))
    assert result.status == "completed"
    rows = trainguard.metrics(result)

    def values(key: str, stage_name: str) -> list[float]:
        return [r["value"] for r in rows if r["key"] == key and r["stage"] == stage_name]

    for name in ("words", "sorting"):
        # 240 samples a stage: nearly every 8-row step holds both tasks, so both losses are logged most steps
        assert len(values("loss/by_task/reverse", name)) >= 20 and len(values("loss/by_task/sort", name)) >= 20
        assert len(values("loss/eval/by_task/reverse", name)) == 1 == len(values("loss/eval/by_task/sort", name))
    # sort's share of rows over each stage's 30 steps (a step without sort logs no share): 0.2 then 0.8 (240 draws
    # a stage: sd 0.026, so a 0.15 margin is ~6 sd)
    assert sum(values("data/share/sort", "words")) / 30 < 0.35 and sum(values("data/share/sort", "sorting")) / 30 > 0.65
    assert all(0 < v < 20 for v in values("loss/by_task/sort", "sorting"))
    # the second stage's checkpoint holds its hard-example pools (losses seen), as plain JSON
    state = json.loads((result.path / "checkpoints" / "step-000060" / "state.json").read_text())["source"]
    assert state["cursor"] == 240 and set(state["pool"]) == {"reverse", "sort"} and len(state["pool"]["sort"]) > 50


def test_skills_are_scored_before_training_and_after_each_stage(tmp_path):
    data = {"sources": [{"task": "reverse", "n": 300, "params": WORDS}, {"task": "sort", "n": 300, "params": WORDS}]}
    stages = [stage("words", {"reverse": 1.0}), stage("sorting", {"sort": 1.0})]
    for s in stages:
        s["max_steps"] = s["eval_every"] = s["save_every"] = 10
    ev = {"tasks": ["reverse", "sort"], "n": 20, "skills": True, "max_new_tokens": 6, "forgetting": 0.5}
    result = trainguard.run(tiny_config(tmp_path / "runs", data=data, stages=stages, eval=ev))
    points = json.loads((result.path / "eval" / "skills.json").read_text())["points"]
    assert [p["when"] for p in points] == ["before", "words", "sorting"]
    assert all(set(p["tasks"]) == {"reverse", "sort"} for p in points)
    forgetting = json.loads((result.path / "eval" / "forgetting.json").read_text())["after"]
    final = json.loads((result.path / "eval" / "final.json").read_text())["tasks"]
    # the same held-out prompts and greedy answers as the forgetting review and the final table
    assert {t: points[1]["tasks"][t]["mean"] for t in forgetting["words"]} == forgetting["words"]
    assert {t: points[2]["tasks"][t]["mean"] for t in ("reverse", "sort")} == {t: final[t]["mean"] for t in final}
