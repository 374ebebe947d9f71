"""The curriculum and BuilderBrain example configs, run as a user would but with short settings."""

import json
from pathlib import Path

import pytest

from trainguard import api
from trainguard.track.store import read_metrics

EXAMPLES = Path(__file__).parent.parent / "examples"


def short(tmp_path: Path, stages: int, steps: int = 12) -> list[str]:
    sets = [f"run.out_dir={tmp_path}", "eval.n=8", "tracking.progress=off", "run.threads=1"]
    for i in range(stages):
        sets += [
            f"stages.{i}.max_steps={steps}",
            f"stages.{i}.schedule.warmup_steps=2",
            f"stages.{i}.eval_every={steps}",
            f"stages.{i}.save_every={steps}",
        ]
    return sets


@pytest.mark.slow
def test_the_curriculum_changes_its_task_mix_at_stage_boundaries(tmp_path):
    result = api.run(EXAMPLES / "curriculum.yaml", overrides=short(tmp_path, 4))
    rows = read_metrics(result.path / "metrics.db")
    shares: dict[str, dict[str, list[float]]] = {}
    for _, stage, key, value, _ in rows:
        if key.startswith("data/share/"):
            shares.setdefault(stage, {}).setdefault(key.removeprefix("data/share/"), []).append(value)
    assert set(shares["words"]) == {"reverse", "sort"}
    assert set(shares["all"]) == {"reverse", "sort", "plan", "grammar", "structured"}
    losses = {(stage, key) for _, stage, key, _, _ in rows if key.startswith("loss/by_task/")}
    assert ("plans", "loss/by_task/plan") in losses and ("all", "loss/by_task/structured") in losses
    final = json.loads((result.path / "eval/final.json").read_text())
    assert set(final["tasks"]) == {"reverse", "sort", "plan", "grammar", "structured"}
    assert final["aggregate"]["n"] == 40
    forgetting = json.loads((result.path / "eval/forgetting.json").read_text())
    assert set(forgetting["after"]) == {"words", "plans", "commands", "all"}
