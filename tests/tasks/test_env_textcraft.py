"""TextCraft as a specification: seeded worlds, an expert that solves every seed, a weak random baseline, safe
handling of any reply, truncation, capped shaping and JSON-ready episode records."""

import json
import random

import pytest
from pydantic import ValidationError

from trainguard.tasks.envs.base import ENVS, make, run_episode
from trainguard.tasks.envs.textcraft import TextCraft
from trainguard.tasks.envs.textcraft_world import (
    BASES,
    MAX_PLAN_ROUNDS,
    Recipe,
    World,
    build_catalogue,
    missing_items,
    plan_rounds,
)

PLANK = Recipe("oak plank", 2, (("oak log", 1),), 1)
ROD = Recipe("oak rod", 1, (("oak plank", 2), ("coal", 1)), 2)
INGOT = Recipe("iron ingot", 1, (("iron ore", 2),), 1)  # a distractor
SMALL = World("oak rod", (PLANK, ROD, INGOT))  # by hand: get 1 coal, get 1 oak log, craft plank, craft rod


def small_env(**params: object) -> TextCraft:
    env = make("textcraft", 0, **params)
    assert isinstance(env, TextCraft)
    env.start(SMALL)
    return env


def play_expert(env: TextCraft) -> list[tuple[str, float]]:
    """Play on from the current state (run_episode would reset to the seed's world): (action, reward) per round."""
    steps = []
    while not env.done:
        action = env.expert_action()
        steps.append((action, env.step(action).reward))
    return steps


def test_seed_0_shows_this_world_and_resets_to_it():
    assert "textcraft" in ENVS.names()
    env = make("textcraft", 0)
    first = env.reset()
    assert first == (
        "Crafting commands:\n"
        "craft 4 copper pane using 3 flint, 2 copper ore\n"
        "craft 1 birch sheet using 3 sand, 3 copper ore\n"
        "craft 4 wool sheet using 1 copper ore, 2 flint\n"
        "\nGoal: craft copper pane.\n"
    )
    env.step("get 2 flint")
    assert env.reset() == first and env.rounds == 0 and env.inventory == {}


def test_the_same_seed_gives_the_same_transitions_and_seeds_differ():
    def random_play(seed: int) -> dict:
        env, rng = make("textcraft", seed, shaping=True), random.Random(seed)
        return run_episode(env, lambda transcript: rng.choice(env.valid_actions()))

    assert [random_play(s) for s in range(5)] == [random_play(s) for s in range(5)]
    assert len({make("textcraft", s).reset() for s in range(30)}) >= 25


def test_the_catalogue_is_fixed_and_every_tier_is_its_tree_depth():
    catalogue = build_catalogue(8)
    assert catalogue is build_catalogue(8) and len(catalogue.recipes) == 24
    assert catalogue.recipes["oak pane"] == Recipe("oak pane", 2, (("oak log", 2),), 1)
    assert catalogue.recipes["iron rod"].command == "craft 1 iron rod using 1 copper pane"
    for item, recipe in catalogue.recipes.items():
        assert plan_rounds(catalogue.recipes, item, {}) <= MAX_PLAN_ROUNDS
        assert max(catalogue.tier(name) for name, _ in recipe.inputs) == recipe.tier - 1, item
    assert {name for r in catalogue.recipes.values() for name, _ in r.inputs} - set(catalogue.recipes) <= set(BASES)


def test_missing_items_walks_the_tree_from_the_goal_down():
    recipes = SMALL.recipes
    assert missing_items(recipes, "oak rod", {}) == {"oak rod": 1, "oak plank": 2, "coal": 1, "oak log": 1}
    # One plank held: still one craft of 2 planks (one spare), so one log.
    one_plank_held = missing_items(recipes, "oak rod", {"oak plank": 1})
    assert one_plank_held == {"oak rod": 1, "oak plank": 1, "coal": 1, "oak log": 1}
    assert missing_items(recipes, "oak rod", {"oak plank": 2, "coal": 5}) == {
        "oak rod": 1, "oak plank": 0, "coal": 0, "oak log": 0,
    }  # fmt: skip
    big = {"oak rod": Recipe("oak rod", 1, (("coal", 12),), 1)}
    assert plan_rounds(big, "oak rod", {}) == 3  # get 9 coal, get 3 coal, craft
    assert plan_rounds(recipes, "oak rod", {}) == 4


def test_the_expert_solves_all_200_seeds_and_random_valid_actions_mostly_fail():
    expert_rounds, random_wins, random_return = [], 0, 0.0
    for seed in range(200):
        env = make("textcraft", seed)
        record = run_episode(env, lambda transcript, env=env: env.expert_action())
        assert record["success"] is True and record["return"] == 1.0, seed
        expert_rounds.append(len(record["turns"]))
        env, rng = make("textcraft", seed), random.Random(seed)
        record = run_episode(env, lambda transcript, env=env, rng=rng: rng.choice(env.valid_actions()))
        random_wins += record["success"]
        random_return += record["return"]
    assert sum(expert_rounds) / 200 == pytest.approx(3.8) and max(expert_rounds) == 6
    assert random_wins == 26 and random_return / 200 == pytest.approx(0.13)  # 13% against the expert's 100%


def test_the_expert_solves_the_deepest_largest_worlds_within_the_plan_bound():
    for seed in range(200):
        env = make("textcraft", seed, min_depth=3, max_depth=3, items_per_tier=32, distractors=10)
        record = run_episode(env, lambda transcript, env=env: env.expert_action())
        assert record["success"] is True and 3 <= len(record["turns"]) <= MAX_PLAN_ROUNDS, seed


def test_the_expert_recovers_from_a_detour():
    env = small_env()
    assert not env.step("get 2 iron ore").info["invalid"] and not env.step("craft 1 iron ingot using 2 iron ore").done
    assert not env.step("get 4 oak log").info["invalid"]  # more than needed
    assert env.expert_action() == "get 1 coal"
    assert play_expert(env) == [("get 1 coal", 0.0), (PLANK.command, 0.0), (ROD.command, 1.0)]  # logs at hand
    assert env.inventory == {"iron ingot": 1, "oak log": 3, "oak rod": 1}


def test_a_solved_episode_says_what_happened_at_each_step():
    env = small_env()
    assert env.step("inventory").observation == "Inventory: You are not carrying anything.\n"
    assert env.step("Thought: coal first.\nAction: get 1 coal").observation == "Got 1 coal\n"
    assert env.step("  action: GET  1   oak log ").observation == "Got 1 oak log\n"
    assert env.step("craft oak plank using 1 oak log").observation == "Crafted 2 oak plank\n"  # count may be left out
    assert env.step("inventory").observation == "Inventory: [coal] (1) [oak plank] (2)\n"
    assert env.valid_actions()[0] == "inventory" and env.valid_actions()[-1] == ROD.command
    last = env.step(ROD.command)
    assert (last.observation, last.reward, last.done) == ("Crafted 1 oak rod\n", 1.0, True)
    assert last.info == {"success": True, "invalid": False, "truncated": False}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n\t",
        "Action:",
        "dance",
        "get 1 coal\nget 1 oak log",  # two bare actions
        "Action: get 1 coal\nAction: get 1 oak log",  # two marked actions
        "action: get 1 coal\naction: get 1 oak log",
        "Thought: both\nAction: get 1 coal\ncraft 2 oak plank using 1 oak log",
        "get 1 diamond",  # not an item of this world
        "get 1 oak plank",  # crafted, not got
        "get 1 sand",  # a base, but not in these commands
        "get 0 coal",
        "get 10 coal",
        "get 99999999999 coal",
        "craft 1 oak rod using 1 coal",  # not as listed
        ROD.command,  # listed, but nothing is held
        "x" * 10240,
        "get 1 coal" + " " * 10000 + "x",
        "\udcff",
        "Action: get 1 coal\udcff",
        "\x00\xff",
        "get ٥ coal",
    ],
)
def test_any_malformed_reply_is_an_invalid_round_and_never_raises(text):
    env = small_env(shaping=True)
    result = env.step(text)
    assert result.observation.startswith("invalid action: ") and len(result.observation) < 80
    assert (result.reward, result.done, env.rounds, env.inventory) == (0.0, False, 1, {})
    assert result.info == {"success": False, "invalid": True, "truncated": False}


def test_every_listed_valid_action_is_accepted_and_nothing_else_is():
    env = small_env()
    env.step("get 2 oak log")
    valid = env.valid_actions()
    assert len(valid) == 1 + 3 * 9 + 1 and PLANK.command in valid and ROD.command not in valid
    for action in valid:
        probe = small_env()
        probe.step("get 2 oak log")
        assert probe.step(action).info["invalid"] is False, action
    assert env.step(ROD.command).info["invalid"] is True


def test_shaping_pays_0_15_for_steps_that_supply_a_missing_item():
    env = small_env(shaping=True)
    rewards = [
        env.step(action).reward
        for action in [
            "get 2 iron ore",  # distractor: 0
            "get 1 coal",  # missing: 0.15
            "get 1 coal",  # no longer missing: 0
            "inventory",  # 0
            "get 11 oak log",  # invalid: 0
            "get 1 oak log",  # 0.15
            PLANK.command,  # 0.15
            ROD.command,  # the goal: 1.0, like without shaping
        ]
    ]
    assert rewards == [0.0, 0.15, 0.0, 0.0, 0.0, 0.15, 0.15, 1.0]
    plain = small_env()
    assert [plain.step(a).reward for a in ["get 1 coal", "get 1 oak log", PLANK.command, ROD.command]] == [0, 0, 0, 1]


def test_shaping_stops_after_six_paid_steps_so_it_never_reaches_a_solve():
    one_plank = Recipe("oak plank", 1, (("oak log", 1),), 1)
    rod = Recipe("oak rod", 1, (("oak plank", 2), ("coal", 3)), 2)
    env = make("textcraft", 0, shaping=True)
    env.start(World("oak rod", (one_plank, rod)))
    steps = ["get 1 coal"] * 3 + ["get 1 oak log"] * 2 + [one_plank.command] * 2 + [rod.command]
    rewards = [env.step(action).reward for action in steps]
    assert rewards == [0.15] * 6 + [0.0, 1.0]  # the 7th useful step is past the cap
    assert sum(rewards) == pytest.approx(1.9)
    unsolved = []
    for seed in range(200):
        env, rng = make("textcraft", seed, shaping=True), random.Random(seed)
        record = run_episode(env, lambda transcript, env=env, rng=rng: rng.choice(env.valid_actions()))
        if not record["success"]:
            unsolved.append(record["return"])
    assert max(unsolved) == pytest.approx(0.75) and len(unsolved) == 174  # the cap allows 0.9 at most


def test_running_out_of_rounds_ends_the_episode_on_reward_0():
    env = small_env(shaping=True, max_rounds=2)
    first = env.step("get 1 coal")
    assert (first.reward, first.done) == (0.15, False)
    last = env.step("get 1 oak log")  # useful, but the last round
    assert (last.reward, last.done) == (0.0, True)
    assert last.info == {"success": False, "invalid": False, "truncated": True}
    with pytest.raises(RuntimeError, match="reset"):
        env.step("inventory")
    exact = small_env(max_rounds=4)  # the expert's 4 steps fit exactly: the solve wins over the round limit
    assert [reward for _, reward in play_expert(exact)] == [0.0, 0.0, 0.0, 1.0] and exact.rounds == 4
    junk = make("textcraft", 3, max_rounds=3)
    record = run_episode(junk, lambda transcript: "nonsense")
    assert len(record["turns"]) == 3 and record["return"] == 0.0 and record["success"] is False


def test_config_refuses_bad_depths_and_unknown_keys():
    with pytest.raises(ValidationError, match="min_depth 3 is above max_depth 2"):
        make("textcraft", 0, min_depth=3)
    with pytest.raises(ValidationError, match="unknown key 'depth'"):
        make("textcraft", 0, depth=2)
    with pytest.raises(ValidationError, match="max_depth"):
        make("textcraft", 0, max_depth=4)
    deep = make("textcraft", 1, min_depth=3, max_depth=3)
    assert build_catalogue(8).tier(deep.world.goal) == 3


def test_an_expert_episode_record_round_trips_through_json():
    env = make("textcraft", 7, shaping=True)
    record = run_episode(env, lambda transcript: env.expert_action())
    assert json.loads(json.dumps(record)) == record
    assert record["env"] == "textcraft" and record["seed"] == 7 and record["success"] is True
    assert record["turns"][0]["observation"] == env.reset()
    paid = sum(1 for t in record["turns"][:-1] if t["reward"] == 0.15)
    assert record["return"] == pytest.approx(1.0 + 0.15 * paid) and paid == len(record["turns"]) - 1
