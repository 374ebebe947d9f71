"""Many processes: two real ranks launched by torchrun on CPU (gloo, one thread each) train as one process with
the same global batch, act alike on a fault that only one of them meets, and resume from SIGKILL exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import max_step, tiny_config, write_config
from trainguard.data.batches import TokenizedExample
from trainguard.data.mix import MixSource
from trainguard.data.rollouts import PoolSource
from trainguard.data.sources import RecordSource
from trainguard.guard.faults import split_examples
from trainguard.track.store import read_metrics

STAGE = tiny_config(Path("runs"))["stages"][0]  # 12 steps of SFT, batch 8, checkpoints every 4


def examples(n: int) -> list[TokenizedExample]:
    return [TokenizedExample([5, 6 + i % 50, 7 + i % 31, 9], 2) for i in range(n)]


def rows(batch) -> list[list[int]]:
    return [ex.ids for ex in split_examples(batch)]


def test_record_shards_are_disjoint_and_together_the_one_process_batch():
    whole = RecordSource(examples(37), 8, seed=3, pad_id=0)
    ranks = [RecordSource(examples(37), 8, seed=3, pad_id=0) for _ in range(2)]
    for r, source in enumerate(ranks):
        source.shard(r, 2)
    for _ in range(11):  # across epoch boundaries (37 is no multiple of 8)
        want = rows(whole.next_batch())
        a, b = (rows(s.next_batch()) for s in ranks)
        assert a + b == want and len(a) == len(b) == 4
    assert ranks[0].state_dict() == ranks[1].state_dict() == whole.state_dict()  # one cursor serves all


def test_mix_shards_draw_the_one_process_batch():
    def build(rank: int, world: int) -> MixSource:
        groups = {name: RecordSource(examples(20 + k), 8, seed=k, pad_id=0) for k, name in enumerate("ab")}
        source = MixSource(groups, {"a": 0.7, "b": 0.3}, 8, seed=1, pad_id=0)
        source.shard(rank, world)
        return source

    whole, ranks = build(0, 1), [build(r, 2) for r in range(2)]
    for _ in range(6):
        w = whole.next_batch()
        a, b = (s.next_batch() for s in ranks)
        assert rows(a) + rows(b) == rows(w) and a.tasks + b.tasks == w.tasks


def test_pool_shards_split_each_steps_prompts_and_sample_apart():
    class Pool(PoolSource):  # the drawing and seeding that the rollout and episode sources share
        build = next_batch = None  # type: ignore[assignment]

    def pool(rank: int, world: int) -> PoolSource:
        source = Pool()
        source.seed = 4
        source.shard(rank, world)
        return source

    whole, ranks = pool(0, 1), [pool(r, 2) for r in range(2)]
    for _ in range(5):
        want = whole.draw(8, 24, 100)  # 24: no step spans two epochs (where an item may recur)
        a, b = (s.draw(8, 24, 100) for s in ranks)
        assert a + b == want and not set(a) & set(b)
    seeds = [whole.step_seed(), *(s.step_seed() for s in ranks)]
    assert len(set(seeds)) == 3  # each rank samples its own stream; one process keeps its old seeds
    assert seeds[0] == 4 * 1_000_003  # the first step's seed, as before ranks existed


# -- two real processes ------------------------------------------------------------------------------------
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "trainguard"]


def launch(cfg: Path, *args: str, processes: int = 2) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "trainguard"] if processes == 1 else TORCHRUN
    return subprocess.Popen(
        [*cmd, *(args or ("run", str(cfg)))], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out.decode()[-3000:]
    return out.decode()


def losses(db: Path) -> dict[int, float]:
    return {step: value for step, _, key, value, _ in read_metrics(db) if key == "loss/train"}


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "final" / "model.safetensors")


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow
def test_two_processes_train_as_one_process_with_the_same_global_batch(tmp_path):
    """On a mix with hard examples: every process folds every process's row losses into the pools, so the hard
    draws (a quarter of each batch) are the one process's too."""
    words = {"min_len": 3, "max_len": 6}
    data = {"sources": [{"task": t, "n": 200, "params": words} for t in ("reverse", "sort")]}
    mix = {"name": "mix", "weights": {"reverse": 0.5, "sort": 0.5}, "hard": {"fraction": 0.25, "pool": 16}}
    stage = STAGE | {"source": mix}
    one = write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", data=data, stages=[stage]))
    two = write_config(tmp_path / "two.yaml", tiny_config(tmp_path / "two", data=data, stages=[stage]))
    finish(launch(one, processes=1))
    finish(launch(two))
    run1, run2 = tmp_path / "one" / "t", tmp_path / "two" / "t"

    assert json.loads((run2 / "manifest.json").read_text())["world_size"] == 2
    last = sorted((run2 / "checkpoints").glob("step-*"))[-1]
    assert json.loads((last / "manifest.json").read_text())["world_size"] == 2
    assert {"state.json", "state.rank1.json", "state.rank1.pt"} <= {p.name for p in last.iterdir()}
    a, b = losses(run1 / "metrics.db"), losses(run2 / "metrics.db")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5, (a, b)
    assert a[12] < a[1] - 1.0  # it learnt
    assert losses(run2 / "ranks" / "rank-1" / "metrics.db") == b  # every rank logs the all-reduced step
    assert close(weights(run1), weights(run2)) < 1e-4
    pools = [json.loads((last / name).read_text())["source"]["pool"] for name in ("state.json", "state.rank1.json")]
    assert pools[0] == pools[1] and sum(map(len, pools[0].values())) == 32  # both groups' pools full, alike
    one_last = json.loads((run1 / "checkpoints" / last.name / "state.json").read_text())["source"]["pool"]
    assert {g: [j for j, _ in p] for g, p in one_last.items()} == {g: [j for j, _ in p] for g, p in pools[0].items()}


@pytest.mark.slow
def test_a_fault_on_one_process_is_acted_on_by_both(tmp_path):
    """An Inf put into rank 1's gradients after their all-reduce stays on rank 1; rank 0 rolls back with it,
    and the run ends as a one-process run whose every gradient met the same fault."""
    fault = {"kind": "inf_grad", "at_step": 6}
    one = write_config(tmp_path / "one.yaml", tiny_config(tmp_path / "one", stages=[STAGE], faults=[fault]))
    two = tiny_config(tmp_path / "two", stages=[STAGE], faults=[fault | {"rank": 1}])
    finish(launch(one, processes=1))
    finish(launch(write_config(tmp_path / "two.yaml", two)))
    run1, run2 = tmp_path / "one" / "t", tmp_path / "two" / "t"

    def rollbacks(events: Path) -> list[tuple[int, str]]:
        lines = [json.loads(line) for line in events.read_text().splitlines()]
        return [(e["step"], e["message"]) for e in lines if e["kind"] == "action"]

    rank0, rank1 = rollbacks(run2 / "events.jsonl"), rollbacks(run2 / "ranks" / "rank-1" / "events.jsonl")
    assert [s for s, _ in rank0] == [s for s, _ in rank1] == [6]
    assert "(other_rank)" in rank0[0][1] and "(nonfinite)" in rank1[0][1]  # rank 0 acted on rank 1's fault
    assert "rollback to step-000004" in rank0[0][1] and "rollback to step-000004" in rank1[0][1]
    assert [s for s, _ in rollbacks(run1 / "events.jsonl")] == [6]
    a, b = losses(run1 / "metrics.db"), losses(run2 / "metrics.db")
    assert max(abs(a[s] - b[s]) for s in a) < 1e-5
    assert close(weights(run1), weights(run2)) < 1e-4


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def kill_midway(cfg: Path, run: Path, step: int = 8) -> None:
    """Launch `cfg` on two processes and SIGKILL every process of it once `step` is logged."""
    proc, deadline = launch(cfg), time.monotonic() + 120
    while max_step(run / "metrics.db") < step:
        assert proc.poll() is None, "the run ended before the kill"
        assert time.monotonic() < deadline, "the run hung"
        time.sleep(0.01)
    for pid in [*descendants(proc.pid), proc.pid]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_two_processes_killed_with_sigkill_resume_to_the_same_weights(tmp_path):
    stage = STAGE | {"max_steps": 30, "save_every": 3, "save_total_limit": 3}
    ref = write_config(tmp_path / "ref.yaml", tiny_config(tmp_path / "ref", stages=[stage]))
    cfg = write_config(tmp_path / "k.yaml", tiny_config(tmp_path / "k", stages=[stage]))
    finish(launch(ref))
    run = tmp_path / "k" / "t"

    kill_midway(cfg, run)
    out = finish(launch(cfg, "resume", str(run)))
    assert "resuming from step-0000" in out
    want, got = weights(tmp_path / "ref" / "t"), weights(run)
    assert all(torch.equal(want[k], got[k]) for k in want), "final weights differ"
    assert losses(run / "metrics.db") == losses(tmp_path / "ref" / "t" / "metrics.db")


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_processes_is_refused_by_field(tmp_path):
    cfg = write_config(tmp_path / "odd.yaml", tiny_config(tmp_path / "odd", stages=[STAGE | {"batch_size": 7}]))
    proc = launch(cfg)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert "stages.0.batch_size=7 must be a multiple of the 2 processes" in out.decode()


@pytest.mark.slow
def test_rl_stages_run_on_two_processes_with_every_decision_shared(tmp_path):
    """SFT, then GRPO and PPO (with its KL early stop, read over every rank) on two processes: each rank answers
    its own prompts, and both log the same all-reduced step (activation statistics are each rank's own)."""
    rollouts = {"name": "rollouts", "task": "reverse", "params": {"min_len": 3, "max_len": 6}, "max_new_tokens": 8}
    stages = [
        STAGE | {"max_steps": 10, "save_every": 5, "eval_every": 5},
        {"name": "grpo", "objective": "grpo", "source": rollouts | {"prompts_per_step": 4, "group_size": 4},
         "max_steps": 4, "optimizer": {"lr": 1e-4}, "eval_every": 2, "save_every": 2},
        {"name": "ppo", "objective": {"name": "ppo", "target_kl": 0.001}, "source": rollouts | {"prompts_per_step": 4},
         "max_steps": 3, "optimizer": {"lr": 1e-4}, "eval_every": 3, "save_every": 3},
    ]  # fmt: skip
    finish(launch(write_config(tmp_path / "rl.yaml", tiny_config(tmp_path / "rl", stages=stages))))
    run = tmp_path / "rl" / "t"

    def shared(db: Path) -> dict[tuple[int, str], float]:
        return {(s, k): v for s, _, k, v, _ in read_metrics(db) if not k.startswith(("perf/", "time/", "act/"))}

    rank0, rank1 = shared(run / "metrics.db"), shared(run / "ranks" / "rank-1" / "metrics.db")
    assert rank0 == rank1
    assert {(s, "rollout/reward_mean") in rank0 for s in range(11, 18)} == {True}
    assert (run / "final" / "model.safetensors").is_file()
