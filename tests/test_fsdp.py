"""run.fsdp: parameters, gradients and optimizer state sharded over two real processes (torchrun, gloo, one
thread each) train as one unsharded process, hold each rank's shards in the checkpoint, roll back and resume
from SIGKILL exactly; what FSDP does not cover yet is refused by field."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from helpers import gpt2_folder, tiny_config, write_config
from test_ranks import STAGE, close, finish, kill_midway, launch, losses, weights
from trainguard.config import load_config
from trainguard.data.collect import collect
from trainguard.errors import ConfigError
from trainguard.reward import load_reward_model
from trainguard.tasks import build_task

FAULT = {"kind": "inf_grad", "at_step": 6}
LONG = STAGE | {"max_steps": 24, "save_every": 3, "batch_size": 4, "grad_accum": 2}  # gradients sync once a step


def fsdp_config(out: Path, **sections) -> dict:
    cfg = tiny_config(out, stages=[LONG], **sections)
    cfg["run"]["fsdp"] = True
    return cfg


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory) -> Path:
    """A 2-process FSDP run whose rank 1 meets an Inf gradient at step 6 (after the reduce-scatter)."""
    tmp = tmp_path_factory.mktemp("fsdp")
    finish(launch(write_config(tmp / "two.yaml", fsdp_config(tmp / "two", faults=[FAULT | {"rank": 1}]))))
    return tmp / "two" / "t"


@pytest.mark.slow
def test_sharded_processes_train_as_one_unsharded_process_and_roll_back_together(tmp_path, sharded_run):
    one = write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", stages=[LONG], faults=[FAULT]))
    finish(launch(one, processes=1))
    run1 = tmp_path / "one" / "t"

    a, b = losses(run1 / "metrics.db"), losses(sharded_run / "metrics.db")
    assert sorted(a) == sorted(b) == list(range(1, 25))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5, (a, b)
    assert close(weights(run1), weights(sharded_run)) < 1e-4
    for events in (run1 / "events.jsonl", sharded_run / "events.jsonl", sharded_run / "ranks/rank-1/events.jsonl"):
        assert "rollback to step-000003 at step 6" in events.read_text()  # the shards were saved and reloaded

    last = sorted((sharded_run / "checkpoints").glob("step-*"))[-1]
    mine, theirs, whole = load_file(last / "model.safetensors"), load_file(last / "model.rank1.safetensors"), {}
    whole = weights(sharded_run)
    name = "model.embed_tokens.weight"
    assert mine[name].shape[0] + theirs[name].shape[0] == whole[name].shape[0]  # each rank holds its half
    assert torch.equal(torch.cat([mine[name], theirs[name]]), whole[name])

    model = AutoModelForCausalLM.from_pretrained(sharded_run / "final")  # a plain model folder, gathered
    out = model.generate(torch.tensor([[1, 100, 101]]), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


@pytest.mark.slow
def test_sharded_processes_killed_with_sigkill_resume_to_the_same_weights(tmp_path, sharded_run):
    cfg = write_config(tmp_path / "k.yaml", fsdp_config(tmp_path / "k", faults=[FAULT | {"rank": 1}]))
    run = tmp_path / "k" / "t"
    kill_midway(cfg, run)
    assert "resuming from step-0000" in finish(launch(cfg, "resume", str(run)))
    want, got = weights(sharded_run), weights(run)
    assert all(torch.equal(want[k], got[k]) for k in want), "final weights differ"
    assert losses(run / "metrics.db") == losses(sharded_run / "metrics.db")


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"stages": [STAGE | {"objective": "grpo", "source": {"name": "rollouts", "task": "reverse"}}]}, "objective"),
        ({"model": {"preset": "tiny", "lora": {"r": 4}}}, "model.lora"),
        ({"run": {"name": "t", "fsdp": True, "compile": True}}, "run.compile"),
        ({"guard": {"generation": {"every": 5}}}, "generation.every"),
    ],
)
def test_what_fsdp_does_not_cover_is_refused_by_field(tmp_path, change, named):
    cfg = tiny_config(tmp_path, **change)
    cfg["run"]["fsdp"] = True
    with pytest.raises(ConfigError, match=rf"run\.fsdp.*{named}"):
        load_config(write_config(tmp_path / "c.yaml", cfg))


@pytest.mark.slow
def test_a_sharded_reward_model_on_tied_embeddings_trains_as_the_replicated_one(tmp_path):
    """A reward stage on GPT-2, whose vocabulary projection is its input embedding (one tensor, so one unit with
    the transformer), reads the transformer's hidden states without the projection and trains a replicated head
    beside the shards; dropout draws per process, so the reference is two unsharded processes."""
    folder = gpt2_folder(tmp_path / "gpt2")
    pairs = tmp_path / "pairs.jsonl"
    collect([build_task("reverse", {"min_len": 3, "max_len": 5})], 160, pairs, pairs=True)
    source = {"name": "pairs", "data": {"sources": [{"path": str(pairs)}], "eval_fraction": 0.2}}
    stage = STAGE | {"name": "rm", "objective": "reward", "source": source, "max_steps": 8}
    runs = {}
    for name, fsdp in (("ddp", False), ("fsdp", True)):
        cfg = tiny_config(tmp_path / name, stages=[stage])
        cfg["run"]["fsdp"], cfg["model"] = fsdp, {"path": str(folder)}
        finish(launch(write_config(tmp_path / f"{name}.yaml", cfg)))
        runs[name] = tmp_path / name / "t"
    a, b = (losses(run / "metrics.db") for run in runs.values())
    assert sorted(a) == sorted(b) == list(range(1, 9))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5, (a, b)
    model, _ = load_reward_model(runs["fsdp"] / "final")  # the gathered base and the head, as one folder
    scores = model(torch.tensor([[1, 100, 101, 2]]), torch.ones(1, 4, dtype=torch.long))
    assert scores.shape == (1,) and torch.isfinite(scores).all()
