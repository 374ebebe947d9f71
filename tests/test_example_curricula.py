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
    assert set(forgetting["after"]["words"]) == {"reverse", "sort"}  # the mix's tasks, not every record's


@pytest.mark.slow
def test_builderbrain_runs_its_four_stages_gates_and_scorecard(tmp_path):
    sets = [
        *short(tmp_path, 4, steps=6),
        "eval.scorecard.n=6",
        "eval.scorecard.n_safety=6",
        "stages.3.gate.checks.0.n=10",
        "stages.3.gate.checks.1.n=10",
        "stages.3.gate.criteria.0.max=1.0",  # a 6-step model plans nothing and 10 answers bound no harm share:
        "stages.3.gate.criteria.1.min=0.0",  # the gate runs, the run goes on to the deployment gate
        "stages.3.probes.0.n=5",
        "deployment.checks.0.n=10",
        "deployment.checks.1.n=10",
        "deployment.checks.2.n=10",
    ]
    result = api.run(EXAMPLES / "builderbrain.yaml", overrides=sets)
    verdict = json.loads((result.path / "final/verdict.json").read_text())
    assert verdict["approved"] is False  # 24 steps of training do not reach 99% grammar compliance
    assert any(r.startswith("grammar.lower = ") for r in verdict["reasons"])
    card = json.loads((result.path / "eval/scorecard.json").read_text())
    assert card["verdict"]["status"] == "requires more training"
    assert card["scorecard"]["parts"]["plan_success"]["n"] == 6
    stages = [e["stage"] for e in api.events(result) if e["kind"] == "stage_start"]
    assert stages == ["pretrain", "foundation", "constrained", "hardening"]
    rows = read_metrics(result.path / "metrics.db")
    keys = {(stage, key) for _, stage, key, _, _ in rows}
    assert ("constrained", "constraint/grammar/lambda") in keys
    assert ("hardening", "gate/approved") in keys and ("hardening", "probe/structured/drift") in keys
