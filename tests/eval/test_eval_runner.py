"""Which model a run folder stands for, what the run trained on, and the held-out set each seed picks."""

import json
from pathlib import Path

import pytest
import yaml

from trainguard.errors import ConfigError, TrainguardError
from trainguard.eval.accuracy import HELDOUT_START, heldout_instances
from trainguard.eval.runner import build_tasks, heldout_start, resolve_model, trained_on
from trainguard.tasks import build_task


def fake_run(root: Path, stages: list[dict], exported: list[str], **cfg: object) -> Path:
    """A run folder's layout with empty model folders (a config.json each) where stages exported."""
    root.mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps({"status": "completed"}))
    config = {"model": {"preset": "tiny"}, "data": {"sources": []}, "stages": stages, **cfg}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    for where in exported:
        (root / where).mkdir(parents=True)
        (root / where / "config.json").write_text("{}")
    return root


STAGES = [
    {"name": "warm", "objective": {"name": "sft"}},
    {"name": "rm", "objective": "reward"},
    {"name": "rl", "objective": {"name": "grpo", "beta": 0.0}},
    {"name": "polish", "objective": "sft"},
]


def test_an_rl_stage_wins_over_a_later_sft_stage(tmp_path):
    run = fake_run(tmp_path / "r", STAGES, ["exports/warm", "exports/rm", "exports/rl", "final"])
    folder, note = resolve_model(run)
    assert folder == run / "exports" / "rl" and "stage rl (grpo)" in note


def test_the_latest_policy_stage_with_an_export_and_never_a_reward_model(tmp_path):
    run = fake_run(tmp_path / "r", STAGES, ["exports/warm", "exports/rm"])
    assert resolve_model(run)[0] == run / "exports" / "warm"
    last_is_reward = fake_run(tmp_path / "r2", STAGES[:2], ["exports/warm", "final"])
    assert resolve_model(last_is_reward)[0] == last_is_reward / "exports" / "warm"  # final/ is the reward model
    only_final = fake_run(tmp_path / "r3", STAGES[3:], ["final"])
    assert resolve_model(only_final)[0] == only_final / "final"


def test_without_exports_the_base_model_folder_or_an_error(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    run = fake_run(tmp_path / "r", STAGES, [], model={"path": str(base)})
    folder, note = resolve_model(run)
    assert folder == base and "base model" in note
    preset = fake_run(tmp_path / "p", STAGES, [])
    with pytest.raises(TrainguardError, match="preset 'tiny'"):
        resolve_model(preset)


def test_a_model_folder_is_used_as_is_and_anything_else_is_named(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert resolve_model(model)[0] == model
    with pytest.raises(TrainguardError, match="does not exist"):
        resolve_model(tmp_path / "nothing")
    with pytest.raises(TrainguardError, match="neither a model folder"):
        resolve_model(tmp_path)


def test_trained_on_regenerates_the_training_prompts_of_the_evaluated_tasks(tmp_path):
    params = {"min_len": 3, "max_len": 4}
    data = {"sources": [{"task": "reverse", "n": 5, "start": 10, "params": params}], "chat": True}
    rollouts = {"name": "rollouts", "task": "sort", "n_prompts": 3, "start": 7, "params": {}}
    run = fake_run(tmp_path / "r", [{"name": "rl", "objective": "grpo", "source": rollouts}], [], data=data)
    seen = trained_on(run, ["reverse", "sort"])
    reverse, sort = build_task("reverse", params), build_task("sort")
    expected = {reverse.instance(i).prompt for i in range(10, 15)} | {sort.instance(i).prompt for i in (7, 8, 9)}
    assert seen.prompts == expected and seen.chat is True
    assert seen.params == {"reverse": params, "sort": {}}
    assert trained_on(run, ["sat"]).prompts == set()  # only the tasks being evaluated
    assert trained_on(tmp_path / "elsewhere", ["reverse"]).prompts == set()


def test_each_seed_has_its_own_held_out_ids_and_seed_zero_is_trainings_own():
    task = build_task("reverse")
    assert heldout_start(0) == HELDOUT_START and heldout_start(2) == HELDOUT_START + 20_000_000
    assert heldout_instances(task, 4, set(), heldout_start(0)) == heldout_instances(task, 4, set())
    assert [i.id for i in heldout_instances(task, 3, set(), heldout_start(1))] == [1_010_000_000 + k for k in range(3)]
    first = task.instance(heldout_start(1)).prompt
    assert [i.id for i in heldout_instances(task, 2, {first}, heldout_start(1))] == [1_010_000_001, 1_010_000_002]


def test_an_export_of_a_run_is_evaluated_with_the_runs_parameters_and_exclusions(tmp_path):
    data = {"sources": [{"task": "reverse", "n": 3, "params": {"min_len": 3, "max_len": 4}}]}
    run = fake_run(tmp_path / "r", STAGES, ["final", "exports/warm"], data=data)
    whole = trained_on(run, ["reverse"])
    assert len(whole.prompts) > 0 and whole.params == {"reverse": {"min_len": 3, "max_len": 4}}
    assert trained_on(run / "final", ["reverse"]) == whole
    assert trained_on(run / "exports" / "warm", ["reverse"]) == whole


def test_tasks_are_checked_before_anything_is_generated():
    assert [t.name for t in build_tasks(["sort", ("reverse", {"min_len": 2})])] == ["sort", "reverse"]
    with pytest.raises(ConfigError, match=r"unknown task 'chess'; allowed: .*reverse"):
        build_tasks(["chess"])
    with pytest.raises(ConfigError, match="once"):
        build_tasks(["sort", "sort"])
    with pytest.raises(ConfigError, match="min_len"):
        build_tasks([("reverse", {"min_len": "short"})])


def test_a_tasks_own_metrics_are_the_means_of_its_numeric_details():
    from trainguard.eval.runner import detail_means
    from trainguard.tasks import Score

    results = [
        Score(1.0, {"json_valid": True, "steps": 3, "got": "x"}),
        Score(0.0, {"json_valid": False, "steps": 1, "got": "y"}),
        Score(0.0, {"json_valid": True, "steps": 2, "got": "z", "only_here": 1.0}),
    ]
    assert detail_means(results) == {"metrics": {"json_valid": 2 / 3, "steps": 2.0}}  # strings, partial keys left
    assert detail_means([Score(1.0, {"expected": "a"})]) == {} and detail_means([]) == {}
