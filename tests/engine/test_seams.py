"""The engine's seams, driven without the CLI: a toy objective with a head, a state scalar and 4 inner
updates per step, and a source that calls the policy (tests/engine/toys.py, loaded as a plug-in)."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from helpers import tiny_config, write_config
from trainguard.config import load_config
from trainguard.engine.companions import folder_sha256, tensors_sha256
from trainguard.engine.loop import Engine
from trainguard.engine.outcome import Hooks
from trainguard.engine.pieces import RunServices
from trainguard.engine.pipeline import Pipeline
from trainguard.engine.state import Knobs
from trainguard.errors import ConfigError
from trainguard.guard.alerts import Alert
from trainguard.guard.policies import Decision
from trainguard.models.loading import add_lora, build_model, load_tokenizer
from trainguard.rundir import RunDir
from trainguard.track.store import read_metrics, read_table

TOYS = str(Path(__file__).with_name("toys.py"))
RUN_SCRIPT = """
import sys
from rich.console import Console
from trainguard.config import load_config
from trainguard.engine.pipeline import Pipeline
from trainguard.engine.state import Knobs
from trainguard.errors import ConfigError
from trainguard.rundir import RunDir
import torch
torch.set_num_threads(1)
cfg = load_config(sys.argv[1])
resume = (cfg.run_dir / "manifest.json").is_file()
run = RunDir.reopen(cfg.run_dir) if resume else RunDir.create(cfg, False)
pipeline = Pipeline(cfg, Console(quiet=True))
pipeline.attach(run)
pipeline.run_all(resume=resume)
run.close("completed")
"""


def toy_stage(**over: Any) -> dict[str, Any]:
    stage = {
        "name": "toy",
        "objective": {"name": "toy_inner", "inner_updates": 4},
        "source": {"name": "toy_policy"},
        "max_steps": 12,
        "batch_size": 8,
        "optimizer": {"lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "eval_every": 6,
        "save_every": 2,
        "save_total_limit": None,
    }
    return stage | over


def toy_config(tmp_path: Path, name: str = "toy", stages: list[dict[str, Any]] | None = None, **sections: Any) -> Path:
    sections.setdefault("guard", {})  # a zero-init head at 10x LR has a huge |Δw|/|w| on purpose
    sections["guard"].setdefault("detectors", {})["update_ratio"] = {"enabled": False}
    cfg = tiny_config(tmp_path / "runs", stages=stages or [toy_stage()], **sections)
    cfg["run"]["name"] = name
    cfg["imports"] = [TOYS]
    return write_config(tmp_path / f"{name}.yaml", cfg)


def run_pipeline(path: Path) -> tuple[Pipeline, RunDir]:
    cfg = load_config(path)
    run = RunDir.create(cfg, overwrite=True)
    pipeline = Pipeline(cfg, Console(quiet=True))
    try:
        pipeline.attach(run)
        pipeline.run_all(resume=False)
    finally:
        run.close("completed")
    return pipeline, run


def engine_for(path: Path) -> tuple[Engine, RunDir]:
    """Stage 0's engine, built the way the pipeline builds it, with the run folder open."""
    cfg = load_config(path)
    run = RunDir.create(cfg, overwrite=True)
    pipeline = Pipeline(cfg, Console(quiet=True))
    pipeline.attach(run)
    knobs = Knobs()
    pieces, _ = pipeline.builder.build(0, knobs)
    hooks = Hooks(event=lambda *a, **k: None, alert=lambda a: None, forget_after=run.store.truncate_after)
    services = RunServices(pipeline.accelerator, pipeline.state, Sink(), pipeline.checkpointer, hooks, knobs)
    return Engine(pieces, services), run


class Sink:
    def log(self, metrics: dict[str, float], step: int, stage: str) -> None:
        pass

    def flush(self) -> None:
        pass


def metric(run: Path, key: str) -> dict[int, float]:
    return {step: value for step, _, k, value, _ in read_metrics(run / "metrics.db") if k == key}


def losses(run: Path) -> list[tuple[int, float]]:
    return sorted(metric(run, "loss/train").items())


def test_killed_and_resumed_run_is_bit_identical_with_heads_state_inner_updates_and_a_policy_source(tmp_path):
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def start(path: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, str(path)], env=env, stderr=subprocess.PIPE)

    clean = toy_config(tmp_path, "clean")
    assert start(clean).wait(timeout=300) == 0
    killed = toy_config(tmp_path, "killed")
    proc = start(killed)
    ckpts = tmp_path / "runs" / "killed" / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts / "step-000006" / "manifest.json").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "runs" / "killed" / "final").exists()  # it really died mid-run
    assert start(killed).wait(timeout=300) == 0

    a, b = tmp_path / "runs" / "clean", tmp_path / "runs" / "killed"
    assert losses(a) == losses(b) and len(losses(a)) == 12
    for f in ("model.safetensors", "heads/head/model.safetensors"):
        ta, tb = load_file(a / "final" / f), load_file(b / "final" / f)
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f
    sa = json.loads((a / "checkpoints" / "step-000012" / "state.json").read_text())
    sb = json.loads((b / "checkpoints" / "step-000012" / "state.json").read_text())
    assert sa["objective"] == sb["objective"] and sa["objective"]["beta"] != 0.5  # the state moved, identically
    assert sa["source"] == sb["source"] and sa["source"]["calls"] == 12
    assert set(metric(a, "opt/inner_updates").values()) == {4.0}


def test_rollback_restores_head_scalar_and_the_heads_optimizer_state(tmp_path):
    engine, run = engine_for(toy_config(tmp_path, stages=[toy_stage(max_steps=4, save_every=4)]))
    try:
        engine.fit()  # 4 steps, checkpoint at step 4
        target = engine.services.checkpointer.latest()
        assert target is not None and target.step == 4
        head_param = engine.pieces.heads["head"].proj.weight
        for _ in range(2):  # two more applied steps move everything
            metrics, _, decision = engine.train_step()
            assert decision.action == "none"
            engine.state.stage_step += 1
            engine.state.global_step += 1
            engine.objective.after_step(metrics)
        saved_head = target.tensors("head")
        saved_opt = target.object("state")["optimizer"]
        saved_beta = target.json("state")["objective"]["beta"]
        assert not torch.equal(head_param, saved_head["proj.weight"]) and engine.objective.beta != saved_beta
        engine.knobs.scale("lr_scale", 0.5)  # an action's knob survives the rollback
        cursor = engine.source.cursor
        alert = Alert("loss_spike", "warning", 7, 9.0, 1.0, "roll back")
        assert engine.rollback(Decision("rollback", [alert]))

        assert torch.equal(head_param, saved_head["proj.weight"])
        assert engine.objective.beta == saved_beta
        head_index = next(i for i, g in enumerate(engine.optimizer.param_groups) if g["module"] == "head")
        head_ids = saved_opt["param_groups"][head_index]["params"]
        live = engine.optimizer.state_dict()["state"]
        for pid in head_ids:
            for key in ("exp_avg", "exp_avg_sq", "step"):
                assert torch.equal(live[pid][key], saved_opt["state"][pid][key]), key
        assert engine.state.global_step == 4 and engine.source.cursor == cursor  # past the bad window
        assert engine.knobs["lr_scale"] == 0.5 and engine.services.world.rollbacks == 1
    finally:
        run.close()


def test_lower_lr_and_group_multipliers_set_each_groups_lr(tmp_path):
    stage = toy_stage(
        optimizer={"lr": 1e-3, "groups": {"model": {"lr_mult": 2.0}}},
        schedule={"name": "constant", "warmup_steps": 0},
    )
    engine, run = engine_for(toy_config(tmp_path, stages=[stage], guard={"lower_lr_factor": 0.25}))
    try:
        assert engine.set_lrs(1) == pytest.approx({"model": 2e-3, "head": 1e-2})  # config 2x, objective 10x
        engine.act(Decision("lower_lr", [Alert("oscillation", "warning", 1, 1.0, 0.9, "lower the LR")]))
        assert engine.knobs["lr_scale"] == 0.25
        assert engine.set_lrs(2) == pytest.approx({"model": 5e-4, "head": 2.5e-3})
        by_group = {(g["module"], g["weight_decay"] > 0): g["lr"] for g in engine.optimizer.param_groups}
        assert by_group[("model", True)] == pytest.approx(5e-4) and by_group[("head", False)] == pytest.approx(2.5e-3)
        engine.act(Decision("tighten_clip", [Alert("oscillation", "warning", 1, 1.0, 0.9, "clip")]))
        assert engine.knobs["clip_scale"] == 0.5
    finally:
        run.close()


def test_pruning_keeps_the_newest_healthy_checkpoint(tmp_path):
    engine, run = engine_for(toy_config(tmp_path, stages=[toy_stage(save_total_limit=2)]))
    try:
        for step, healthy in ((2, True), (4, False), (6, False), (8, False)):
            engine.state.global_step = step
            engine.save(healthy=healthy)
        kept = sorted(p.name for p in engine.services.checkpointer.candidates())
        assert kept == ["step-000002", "step-000006", "step-000008"]
    finally:
        run.close()


def test_second_stage_from_base_with_a_reference_records_its_hash_and_never_saves_it(tmp_path):
    second = toy_stage(name="again", init="base", reference="copy", reward_model="toy", max_steps=4, save_every=2)
    _, run = run_pipeline(toy_config(tmp_path, stages=[toy_stage(max_steps=4), second]))
    manifest = json.loads((run.path / "manifest.json").read_text())
    recorded = manifest["companions"]["again"]["reference"]
    cfg = load_config(run.path / "config.yaml")
    base = build_model(cfg.model, load_tokenizer(cfg.model, cfg.tokenizer), cfg.tokenizer.max_length, cfg.run.seed)
    assert recorded["sha256"] == tensors_sha256(base) and "preset tiny" in recorded["path"]
    rm = manifest["companions"]["again"]["reward_model"]
    assert rm == {"path": str(run.path / "exports" / "toy"), "sha256": folder_sha256(run.path / "exports" / "toy")}
    first_of_second = run.path / "checkpoints" / "step-000004"  # stage 2's start (its rollback target) ...
    stages = {p: json.loads((p / "manifest.json").read_text())["stage"] for p in run.checkpoints.iterdir()}
    stage_two = [p for p, name in stages.items() if name == "again"]
    assert stage_two, "stage 2 saved checkpoints"
    for ckpt in stage_two:
        assert sorted(f.name for f in ckpt.iterdir()) == [
            "head.safetensors", "manifest.json", "model.safetensors", "state.json", "state.pt",
        ]  # fmt: skip
    start = json.loads((first_of_second / "manifest.json").read_text())
    assert start["stage"] == "again"  # stage 2 re-saved step 4 at its start, from the base weights
    saved = load_file(first_of_second / "model.safetensors")
    assert all(torch.equal(saved[k], v) for k, v in base.state_dict().items() if k in saved)
    exported = load_file(run.path / "exports" / "toy" / "model.safetensors")
    assert any(not torch.equal(exported[k], saved[k]) for k in saved)  # so `init: base` did not take stage 1's


def test_a_spike_in_the_grace_window_after_a_stage_start_is_not_alerted_but_a_later_one_is(tmp_path):
    def spikes(name: str, grace: int) -> list[int]:
        guard = {
            "detectors": {"loss_spike": {"window": 8, "sigmas": 4.0}},  # armed after 4 steps of a stage
            "policies": {"loss_spike": "skip_step", "grad_explosion": "none"},
        }
        stages = [
            {"name": "one", "objective": "sft", "max_steps": 20, "batch_size": 16, "optimizer": {"lr": 3e-3},
             "schedule": {"warmup_steps": 2}, "save_every": 100, "eval_every": 100},
            {"name": "two", "objective": "sft", "max_steps": 24, "batch_size": 16, "optimizer": {"lr": 1e-3},
             "schedule": {"warmup_steps": 0}, "save_every": 100, "eval_every": 100, "guard": {"grace_steps": grace}},
        ]  # fmt: skip
        faults = [
            {"kind": "corrupt_batch", "at_step": 27, "magnitude": 1.0},  # stage two, step 7: armed, in the grace
            {"kind": "corrupt_batch", "at_step": 40, "magnitude": 1.0},  # stage two, step 20: after it
        ]
        _, run = run_pipeline(toy_config(tmp_path, name, stages=stages, guard=guard, faults=faults))
        alerts = read_table(run.path / "metrics.db", "alerts")
        return sorted({a["step"] for a in alerts if a["kind"] == "loss_spike"})

    assert spikes("graced", grace=10) == [40]
    assert spikes("control", grace=0) == [27, 40]  # the same jump, alerted without the grace window


def test_a_nonfinite_last_update_after_applied_ones_is_a_rollback_not_a_half_skip(tmp_path):
    objective = {"name": "toy_inner", "inner_updates": 4, "poison": [5, 3]}  # step 5's last update: 3 applied
    guard = {"policies": {"nonfinite": "skip_step"}}
    stage = toy_stage(objective=objective, max_steps=8)
    _, run = run_pipeline(toy_config(tmp_path, stages=[stage], guard=guard))
    events = [e for e in read_table(run.path / "metrics.db", "events") if e["kind"] == "action"]
    assert [e["message"].split(" (")[0] for e in events] == ["rollback to step-000004 at step 5"]
    assert "nonfinite" in events[0]["message"]
    assert all(math.isfinite(v) for v in metric(run.path, "loss/train").values())
    assert not metric(run.path, "guard/skipped")  # never logged as a skipped step


def test_early_stop_skips_the_remaining_inner_updates(tmp_path):
    stage = toy_stage(objective={"name": "toy_inner", "inner_updates": 4, "stop_above": -1.0}, max_steps=3)
    _, run = run_pipeline(toy_config(tmp_path, stages=[stage]))
    assert set(metric(run.path, "opt/inner_updates").values()) == {1.0}  # stopped after the first, every step
    assert not metric(run.path, "guard/skipped")


def test_a_nonfinite_update_already_applied_is_rolled_back_even_if_the_policy_says_skip(tmp_path):
    guard = {"policies": {"nonfinite": "skip_step"}}
    faults = [{"kind": "nan_loss", "at_step": 5}]  # hits the first of 4 inner updates, which is applied at once
    _, run = run_pipeline(toy_config(tmp_path, stages=[toy_stage(max_steps=8)], guard=guard, faults=faults))
    events = read_table(run.path / "metrics.db", "events")
    rollbacks = [e for e in events if e["kind"] == "action" and "rollback to step-000004" in e["message"]]
    assert len(rollbacks) == 1 and "nonfinite" in rollbacks[0]["message"]
    final = load_file(run.path / "final" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in final.values())
    assert all(math.isfinite(v) for v in metric(run.path, "loss/train").values())


def test_a_missing_companion_or_init_folder_fails_before_training_naming_field_and_path(tmp_path):
    from typer.testing import CliRunner

    from trainguard.cli import app

    stages = [toy_stage(reward_model=str(tmp_path / "no-such-rm")), toy_stage(name="two", init="later")]
    result = CliRunner().invoke(app, ["run", str(toy_config(tmp_path, stages=stages))])
    assert result.exit_code == 2
    assert "stages.0.reward_model" in result.output and "no-such-rm" in result.output
    assert "stages.1.init: 'later'" in result.output
    assert not (tmp_path / "runs" / "toy").exists()


def test_a_detector_watching_a_metric_the_stage_does_not_log_is_named(tmp_path):
    guard = {"detectors": {"loss_spike": {"metric": "loss/nope"}}}
    with pytest.raises(ConfigError, match=r"guard.detectors.loss_spike.metric: 'loss/nope'.*loss/task"):
        run_pipeline(toy_config(tmp_path, stages=[toy_stage(max_steps=2)], guard=guard))


def test_generation_checks_sample_in_eval_mode_and_training_resumes_in_train_mode(tmp_path):
    engine, run = engine_for(toy_config(tmp_path, stages=[toy_stage(max_steps=2)]))

    class Recorder:
        def __init__(self) -> None:
            self.modes: list[bool] = []

        def due(self, step):
            return False

        def check(self, model, step):
            self.modes.append(model.training)
            return {"gen/unique_ratio": 1.0}, []

    try:
        recorder = engine.pieces.generation = Recorder()
        engine.train_mode(True)
        engine.check_generation()
        assert recorder.modes == [False] and engine.policy.training and engine.pieces.heads["head"].training
        engine.fit()
        assert engine.source.modes and all(m == (False, True) for m in engine.source.modes)  # the source's view
    finally:
        run.close()


def test_a_plugin_adds_a_loss_term_updates_after_applied_steps_and_is_checkpointed(tmp_path):
    stage = toy_stage(max_steps=3, save_every=3, plugins=[{"name": "toy_penalty", "lam": 0.1}])
    engine, run = engine_for(toy_config(tmp_path, stages=[stage]))
    try:
        (penalty,) = engine.pieces.plugins
        metrics, _, _ = engine.train_step()
        want = metrics["loss/task"] + metrics["loss/head"] + metrics["loss/penalty"]
        assert metrics["loss/penalty"] == pytest.approx(0.1 * metrics["loss/task"], rel=1e-5)
        assert metrics["loss/train"] == pytest.approx(want, rel=1e-5)
        engine.state.stage_step = engine.state.global_step = 1
        engine.fit()
        assert penalty.lam > 0.1
        saved = engine.services.checkpointer.latest().json("state")
        assert saved["plugin/toy_penalty"] == {"lam": penalty.lam}
    finally:
        run.close()


def test_a_frozen_base_trains_only_the_head_and_is_not_checkpointed(tmp_path):
    engine, run = engine_for(toy_config(tmp_path, stages=[toy_stage(max_steps=3, save_every=3, freeze_base=True)]))
    try:
        before = {k: v.clone() for k, v in engine.policy.state_dict().items()}
        head_before = engine.pieces.heads["head"].proj.weight.clone()
        engine.fit()
        assert all(torch.equal(before[k], v) for k, v in engine.policy.state_dict().items())
        assert not torch.equal(head_before, engine.pieces.heads["head"].proj.weight)
        files = sorted(f.name for f in engine.services.checkpointer.latest().path.iterdir())
        assert "model.safetensors" not in files and "head.safetensors" in files
        assert {g["module"] for g in engine.optimizer.param_groups} == {"head"}
    finally:
        run.close()


def test_an_adapter_reference_is_the_base_without_a_second_copy():
    from trainguard.config import LoraSection, ModelSection
    from trainguard.engine.companions import reference_policy
    from trainguard.models.tokenizer import byte_tokenizer

    tok = byte_tokenizer()
    base = build_model(ModelSection(preset="tiny"), tok, 32, seed=0)
    policy = add_lora(build_model(ModelSection(preset="tiny"), tok, 32, seed=0), LoraSection(r=4, dropout=0.0))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)  # a trained adapter
    reference = reference_policy("adapter", policy, "start", torch.device("cpu"))
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    ref = reference(input_ids=ids).logits
    assert torch.allclose(ref, base(input_ids=ids).logits, atol=1e-6)
    assert not torch.allclose(ref, policy(input_ids=ids).logits, atol=1e-3)
    assert not ref.requires_grad
    assert sum(1 for _ in reference.module.policy.parameters()) == sum(1 for _ in policy.parameters())  # same one


def test_best_follows_the_configured_metric_and_direction(tmp_path):
    stage = toy_stage(max_steps=8, eval_every=2, best_metric="loss/eval", best_mode="max")
    _, run = run_pipeline(toy_config(tmp_path, stages=[stage]))
    evals = metric(run.path, "loss/eval")
    bests = [e for e in read_table(run.path / "metrics.db", "events") if e["kind"] == "best"]
    values = [json.loads(e["data"])["value"] for e in bests]
    assert values == sorted(values) and values[-1] == max(evals.values())  # higher is better here
    assert (run.path / "best" / "heads" / "head" / "model.safetensors").is_file()


def test_a_stage_may_bring_its_own_data_start_from_a_folder_and_drop_lora(tmp_path):
    from trainguard.models.loading import export_model, is_lora

    cfg0 = load_config(toy_config(tmp_path, "seed"))
    tok = load_tokenizer(cfg0.model, cfg0.tokenizer)
    start = build_model(cfg0.model, tok, 32, seed=123)  # another init than the run's seed 0
    export_model(start, tok, tmp_path / "start-here")
    second = toy_stage(
        name="two",
        init=str(tmp_path / "start-here"),
        lora=None,
        source={"name": "toy_policy", "data": {"sources": [{"task": "sort", "n": 50}], "eval_fraction": 0.2}},
    )
    path = toy_config(tmp_path, stages=[toy_stage(), second], model={"preset": "tiny", "lora": {"r": 4}})
    cfg = load_config(path)
    run = RunDir.create(cfg, overwrite=True)
    try:
        pipeline = Pipeline(cfg, Console(quiet=True))
        pipeline.attach(run)
        first, _ = pipeline.builder.build(0, Knobs())
        two, _ = pipeline.builder.build(1, Knobs())
        assert is_lora(first.model) and not is_lora(two.model)
        assert len(first.source.examples) == 360 and len(two.source.examples) == 40  # 400 and 50 records, split
        prompts = tok.batch_decode(two.source.next_batch(two.model).input_ids[:2], skip_special_tokens=True)
        assert all("sort" in p.lower() for p in prompts), prompts
        loaded = two.model.state_dict()
        assert all(torch.equal(loaded[k], v) for k, v in start.state_dict().items())
    finally:
        run.close()


def test_a_registered_action_turns_its_own_knob_which_is_checkpointed(tmp_path):
    from trainguard.guard.actions import ACTIONS, Action, register_action

    if "test_cool_down" not in ACTIONS:
        register_action(Action("test_cool_down", 1, knob="temperature", factor=0.5))
    guard = {"policies": {"oscillation": "test_cool_down"}}
    engine, run = engine_for(toy_config(tmp_path, stages=[toy_stage(max_steps=2)], guard=guard))
    try:
        assert engine.guard.policies["oscillation"] == "test_cool_down"
        engine.act(Decision("test_cool_down", [Alert("oscillation", "warning", 1, 1.0, 0.9, "cool down")]))
        assert engine.knobs["temperature"] == 0.5 and engine.knobs["lr_scale"] == 1.0
        assert engine.objective.ctx.knobs is engine.knobs  # what a sampling objective or source would read
        assert engine.save().path.joinpath("state.json").read_text().count('"temperature": 0.5') == 1
    finally:
        run.close()
    with pytest.raises(ConfigError, match="unknown action 'warm_up'"):
        load_config(toy_config(tmp_path, "bad", guard={"policies": {"oscillation": "warm_up"}}))
