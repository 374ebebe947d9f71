"""examples/dragon.yaml as a user runs it, with short settings: the bdh preset through four task mixes, each
stage's own losses and spike traces, skills before and after every stage, and a guard that tells the loss rise
at a stage boundary (expected) from a real spike inside a stage."""

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from trainguard import api

DRAGON = Path(__file__).parent.parent / "examples" / "dragon.yaml"
STAGES = ["text", "functions", "bash", "tools"]


def dragon(tmp_path: Path, steps: list[int], **sections: Any) -> dict[str, Any]:
    cfg = yaml.safe_load(DRAGON.read_text())
    cfg["run"] |= {"out_dir": str(tmp_path), "threads": 1}
    cfg["tracking"] = {"tensorboard": False, "progress": "off"}
    cfg["eval"] |= {"n": 4, "max_new_tokens": 24}
    cfg["data"]["sources"] = [s | {"n": 300} for s in cfg["data"]["sources"]]
    cfg["stages"] = [
        stage | {"max_steps": n, "eval_every": n, "save_every": n, "schedule": {"warmup_steps": 2}}
        for stage, n in zip(cfg["stages"], steps, strict=False)
    ]
    for key, value in sections.items():
        cfg[key] = cfg.get(key, {}) | value if isinstance(value, dict) else value
    return cfg


@pytest.mark.slow
def test_the_dragon_curriculum_trains_each_stages_mix_and_scores_every_skill(tmp_path):
    result = api.run(dragon(tmp_path, [6, 6, 6, 6]))
    assert [e["stage"] for e in api.events(result) if e["kind"] == "stage_start"] == STAGES
    rows = api.metrics(result)
    by_task = {(r["stage"], r["key"].removeprefix("data/share/")) for r in rows if r["key"].startswith("data/share/")}
    config = yaml.safe_load(DRAGON.read_text())
    for stage in config["stages"]:  # every stage draws only its own mix's tasks
        drawn = {task for name, task in by_task if name == stage["name"]}
        assert drawn <= set(stage["source"]["weights"]) and drawn
    firing = [r["value"] for r in rows if r["key"] == "spike/L0/firing"]
    assert len(firing) == 24 and all(0 < v < 1 for v in firing)  # every step, a real rate
    assert {r["key"] for r in rows} >= {"loss/sparsity", "spike/L3/firing", "loss/by_task/tool_use"}
    points = json.loads((result.path / "eval" / "skills.json").read_text())["points"]
    assert [p["when"] for p in points] == ["before", *STAGES]
    assert all(set(p["tasks"]) == set(config["eval"]["tasks"]) for p in points)
    assert set(points[-1]["tasks"]["function_call"]) == {"mean", "json_valid", "format_ok", "name_ok", "arguments_ok"}
    model = AutoModelForCausalLM.from_pretrained(result.path / "final")  # a bdh folder, through the Auto classes
    assert model.config.model_type == "trainguard_bdh" and model.config.tau_mem == 10.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.slow
def test_a_stage_boundarys_loss_rise_is_not_a_spike_but_a_spike_inside_a_stage_is(tmp_path):
    window, grace = 16, 10
    guard = {
        "grace_steps": grace,
        "detectors": {"loss_spike": {"window": window}},  # armed after 8 steps: well before the boundary
        "policies": {"loss_spike": "skip_step"},
    }
    boundary, injected = 41, 60  # the functions stage's first step; its 20th, after the grace window
    faults = [{"kind": "corrupt_batch", "at_step": injected, "magnitude": 1.0}]
    result = api.run(dragon(tmp_path, [40, 25], guard=guard, faults=faults))
    spikes = [a["step"] for a in api.alerts(result) if a["kind"] == "loss_spike"]
    assert spikes == [injected]  # caught inside the stage, and nothing at the boundary
    loss = {r["step"]: r["value"] for r in api.metrics(result, "loss/task")}
    before = [loss[s] for s in range(boundary - window, boundary)]
    limit = statistics.fmean(before) + 6 * statistics.pstdev(before)
    assert loss[boundary] > limit  # the boundary's rise is spike-sized: only the grace window kept it quiet
