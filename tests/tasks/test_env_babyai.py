"""The BabyAI environment as a specification: the text layer, seeded episodes, minigrid's bot as the expert, safe
handling of bad replies, truncation, the success reward and its shaping. Skipped where minigrid is not installed."""

import json
import random

import pytest
from pydantic import ValidationError

pytest.importorskip("minigrid")

from trainguard.errors import ConfigError
from trainguard.tasks.envs.babyai import GOAL_BONUS, INVALID, LEVELS, success_reward
from trainguard.tasks.envs.babyai_world import offset_text
from trainguard.tasks.envs.base import make, run_episode

FIRST = (
    "Goal: go to the red ball.\n"
    "You see: grey key 1 (2 right), grey box (1 ahead 2 left), grey key 2 (2 ahead 2 right).\n"
    "In front: nothing. Carrying: nothing.\n"
    "Actions: turn left, turn right, move forward.\n"
)
EXPERT_SEED0 = ["turn right", "move forward", "turn right", "move forward", "turn left"]


def expert_episode(env):
    return run_episode(env, lambda transcript: env.expert_action())


def test_forty_levels_and_unknown_ones_are_refused_with_the_list():
    assert (
        len(LEVELS) == 40 == len(set(LEVELS)) and LEVELS[0] == "GoToRedBallGrey" and LEVELS[-1] == "BossLevelNoUnlock"
    )
    with pytest.raises(ValidationError, match="unknown BabyAI level 'Maze'; allowed: GoToRedBallGrey, GoToRedBall"):
        make("babyai", 0, level="Maze")
    with pytest.raises(ConfigError, match="OpenRedDoor does not take num_dists"):
        make("babyai", 0, level="OpenRedDoor", num_dists=3)


def test_offsets_are_counted_from_the_agent():
    assert offset_text(2, 0) == "2 ahead" and offset_text(1, -2) == "1 ahead 2 left"
    assert offset_text(0, 3) == "3 right" and offset_text(0, 0) == "here"


def test_the_same_seed_gives_the_same_text_and_transitions_and_seeds_differ():
    env = make("babyai", 0)
    assert env.reset() == FIRST and env.valid_actions() == ["turn left", "turn right", "move forward"]
    first = expert_episode(env)
    again = expert_episode(make("babyai", 0))
    assert first == again and [t["action"] for t in first["turns"]] == EXPERT_SEED0
    assert first["turns"][2]["observation"].endswith(
        "In front: grey key. Carrying: nothing.\nActions: turn left, turn right, pick up.\n"
    )
    assert env.reset() == FIRST and env.rounds == 0  # reset replays the seed's episode
    assert len({make("babyai", seed).reset() for seed in range(10)}) == 10


def test_the_success_reward_is_one_minus_0_9_steps_over_max_steps():
    assert success_reward(0, 64) == 1.0
    assert success_reward(32, 64) == pytest.approx(0.55)
    assert success_reward(64, 64) == pytest.approx(0.1)
    record = expert_episode(make("babyai", 0))  # 5 primitive moves in an 8x8 room: max_steps 64
    assert [t["reward"] for t in record["turns"]] == [0.0, 0.0, 0.0, 0.0, 1 - 0.9 * 5 / 64]
    assert record["return"] == 0.9296875 and record["success"] is True


def test_shaping_adds_1_0_on_the_goal_and_nothing_elsewhere():
    assert GOAL_BONUS == 1.0
    record = expert_episode(make("babyai", 0, shaping=True))
    assert [t["reward"] for t in record["turns"]] == [0.0, 0.0, 0.0, 0.0, 1.9296875]
    env = make("babyai", 0, shaping=True, max_rounds=3)
    assert [env.step("turn left").reward for _ in range(3)] == [0.0, 0.0, 0.0] and env.done


def test_macro_actions_compile_to_primitives_that_each_cost_a_step():
    env = make("babyai", 0, macro_actions=True)
    assert "go to grey box" in env.valid_actions() and "pick up grey key 2" in env.valid_actions()
    assert "go to red ball" not in env.valid_actions()  # not in view yet
    result = env.step("Thought: the box is close.\nAction: Go to grey box.")
    # forward, turn left, forward: facing the box from its right side after 3 moves, in 1 round
    assert env.world.step_count == 3 and env.rounds == 1 and not result.info["invalid"]
    assert "In front: grey box." in result.observation and "go to grey box" not in result.observation  # there
    assert {"pick up", "toggle", "pick up grey box"} <= set(env.valid_actions())


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  \n ",
        "Action:",
        "turn left, move forward",
        "Action: turn left; turn right",
        "pick up",  # nothing in front at seed 0
        "drop",
        "toggle",
        "go to red ball",  # macros are off by default
        "fly north",
        "x" * 10_000,
        "turn left " * 1_100,
        "\udcff",
        "Action: turn\udcff left",
        "\x00\xff",
    ],
)
def test_malformed_replies_give_an_invalid_observation_count_a_round_and_change_nothing(text):
    env = make("babyai", 0)
    pos, direction = tuple(env.world.agent_pos), env.world.agent_dir
    result = env.step(text)
    assert result.observation == INVALID == "invalid action: reply with one of the listed actions\n"
    assert (result.reward, result.done, env.rounds, env.world.step_count) == (0.0, False, 1, 0)
    assert result.info == {"success": False, "invalid": True, "truncated": False}
    assert (tuple(env.world.agent_pos), env.world.agent_dir) == (pos, direction)
    assert env.step("Thought: fine.\nAction: turn right").info["invalid"] is False  # the episode goes on


def test_max_rounds_truncates_with_done_and_reward_0():
    env = make("babyai", 0, max_rounds=2)
    assert env.step("turn left").done is False
    last = env.step("oops")
    assert last.done and last.reward == 0.0 and last.info == {"success": False, "invalid": True, "truncated": True}
    with pytest.raises(RuntimeError, match="reset"):
        env.step("turn left")


def test_the_expert_episode_record_round_trips_through_json():
    record = expert_episode(make("babyai", 3, shaping=True))
    assert json.loads(json.dumps(record)) == record
    assert record["env"] == "babyai" and record["seed"] == 3 and record["success"] is True
    assert record["turns"][0]["observation"].startswith("Goal: go to the red ball.\nYou see: ")


@pytest.mark.slow
def test_the_expert_solves_at_least_95_percent_of_seeds_0_to_199():
    records = [expert_episode(make("babyai", seed)) for seed in range(200)]
    successes = sum(r["success"] for r in records)
    rounds = sum(len(r["turns"]) for r in records) / 200
    assert successes == 200 and 5.0 < rounds < 7.0  # measured: 200/200, 5.9 rounds (minigrid 3.2.0)
    assert max(len(r["turns"]) for r in records) <= 40  # inside the default max_rounds


@pytest.mark.slow
def test_a_random_valid_action_baseline_is_far_below_the_expert():
    def random_episode(seed: int, **params) -> dict:
        env, rng = make("babyai", seed, **params), random.Random(seed)
        return run_episode(env, lambda transcript: rng.choice(env.valid_actions()))

    plain = [random_episode(seed) for seed in range(200)]
    assert sum(r["success"] for r in plain) == 49  # measured: 24.5% against the expert's 100%
    assert sum(r["return"] for r in plain) / 200 == pytest.approx(0.175, abs=0.005)
    # AgentGym's macro actions make GoTo levels easy to stumble through: why they are off by default.
    macro = [random_episode(seed, macro_actions=True) for seed in range(200)]
    assert sum(r["success"] for r in macro) == 182
