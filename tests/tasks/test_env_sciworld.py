"""The ScienceWorld environment as a specification: Java is named when missing, seeded variations, the gold path as
expert, rescaled scores, shaping, bad replies and truncation. The simulator's tests skip where scienceworld or Java
is absent; it is one JVM per process, so they share it (about 1.5 s to start)."""

import importlib.util
import json
import random
import shutil

import pytest
from pydantic import ValidationError

from trainguard.errors import ConfigError
from trainguard.tasks.envs import sciworld
from trainguard.tasks.envs.base import make, run_episode
from trainguard.tasks.envs.sciworld import GOAL_BONUS, INVALID, PROGRESS_BONUS, TASKS, rescaled_reward

needs_java = pytest.mark.skipif(
    shutil.which("java") is None or importlib.util.find_spec("scienceworld") is None,
    reason="needs the scienceworld package and Java on PATH",
)


def expert_episode(env):
    return run_episode(env, lambda transcript: env.expert_action())


def test_a_missing_java_is_named_in_the_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no java anywhere
    with pytest.raises(ConfigError, match=r"needs Java \(a JRE 11 or newer\) on PATH"):
        make("sciworld", 0)


def test_thirty_tasks_and_unknown_ones_are_refused_with_the_list():
    assert len(TASKS) == 30 == len(set(TASKS))
    with pytest.raises(ValidationError, match="unknown ScienceWorld task 'cook'; allowed: boil, change-the-state"):
        make("sciworld", 0, task="cook")


def test_scores_are_rescaled_rises_clipped_at_zero():
    assert rescaled_reward(8, 0) == 0.08 and rescaled_reward(100, 75) == 0.25
    assert rescaled_reward(-100, 50) == -0.5  # a failed task takes back what it had paid: the return ends at 0
    assert rescaled_reward(-100, 0) == 0.0 and (PROGRESS_BONUS, GOAL_BONUS) == (0.15, 1.0)


@needs_java
@pytest.mark.slow  # the simulator takes seconds per episode
def test_the_gold_path_solves_seed_0_and_its_actions_replay_the_same():
    env = make("sciworld", 0)
    first = env.reset()
    assert first.startswith("Task Description:\nYour task is to find a(n) living thing.") and env.variation == 98
    record = expert_episode(env)
    assert record["success"] is True and record["return"] == pytest.approx(1.0) and 10 <= len(record["turns"]) <= 16
    assert record["turns"][-1]["action"].startswith("move ") and json.loads(json.dumps(record)) == record
    again = make("sciworld", 0)
    replies = iter(t["action"] for t in record["turns"])
    assert again.reset() == first and run_episode(again, lambda transcript: next(replies)) == record
    assert expert_episode(make("sciworld", 0)) == record  # the first gold path drawn is kept
    assert len({make("sciworld", seed).variation for seed in range(4)}) >= 3


@needs_java
@pytest.mark.slow  # the simulator takes seconds per episode
def test_shaping_pays_0_15_for_each_rise_and_1_0_on_completion():
    plain = expert_episode(make("sciworld", 0))
    shaped = expert_episode(make("sciworld", 0, shaping=True))
    rises = [t["reward"] > 0 for t in plain["turns"]]
    expected = [t["reward"] + (PROGRESS_BONUS if up else 0.0) for t, up in zip(plain["turns"], rises, strict=True)]
    expected[-1] += GOAL_BONUS
    assert [t["reward"] for t in shaped["turns"]] == pytest.approx(expected)
    assert shaped["return"] == pytest.approx(1.0 + PROGRESS_BONUS * sum(rises) + GOAL_BONUS)


@needs_java
def test_malformed_replies_are_invalid_rounds_and_never_raise():
    env = make("sciworld", 1, max_rounds=20)
    replies = ["", "Action:", "fly to the moon", "x" * 10_000, "\udcff", "go to \udcff hallway", "\x00\xff"]
    for count, text in enumerate(replies, start=1):
        result = env.step(text)
        assert result.observation == INVALID and result.reward == 0.0 and result.done is False
        assert result.info == {"success": False, "invalid": True, "truncated": False} and env.rounds == count
    assert env.history == [] and env.step("Thought: look first.\nAction: look around").info["invalid"] is False


@needs_java
def test_max_rounds_truncates_with_done_and_reward_0():
    env = make("sciworld", 0, max_rounds=2)
    assert env.step("look around").done is False
    last = env.step("look around")
    assert last.done and last.reward == 0.0 and last.info["truncated"] is True and last.info["success"] is False


@needs_java
@pytest.mark.slow  # the simulator takes seconds per episode
def test_two_episodes_can_interleave_on_the_one_simulator():
    a, b = make("sciworld", 0), make("sciworld", 2)
    a.step(a.expert_action())
    b.step(b.expert_action())
    assert sciworld._simulator["owner"] is b
    record = expert_episode(a)  # reset: the whole gold path again, after b took the simulator
    assert record["success"] is True


@needs_java
@pytest.mark.slow
def test_the_gold_path_solves_seeds_0_to_9_and_random_actions_do_not():
    experts = [expert_episode(make("sciworld", seed)) for seed in range(10)]
    assert sum(r["success"] for r in experts) == 10  # measured: 100/100 seeds
    randoms = []
    for seed in range(10):
        env, rng = make("sciworld", seed), random.Random(seed)
        randoms.append(run_episode(env, lambda transcript, env=env, rng=rng: rng.choice(env.valid_actions())))
    assert sum(r["success"] for r in randoms) == 0 and sum(r["return"] for r in randoms) / 10 < 0.1
