"""ALFWorld-lite as a specification: seeded household worlds, ALFWorld's phrasing, an expert that solves them, a
random baseline far below it, safe handling of any reply, truncation, and shaping that never outpays solving."""

import json
import random
import statistics

import pytest
from pydantic import ValidationError

from trainguard.tasks.envs.alfworld import (
    INVALID_OBSERVATION,
    MAX_UNSOLVED_RETURN,
    Alfworld,
    parse_single_action,
)
from trainguard.tasks.envs.alfworld_world import MILESTONES, TASK_TYPES, TASKS, Item, Receptacle, TaskType, World
from trainguard.tasks.envs.base import ENVS, make, run_episode


def handmade(task_type: TaskType = "pick_heat_then_place_in_recep", **params: object) -> Alfworld:
    """A known kitchen: apple 1 and mug 1 on the countertop, an egg in the closed fridge, an empty microwave."""
    receptacles = {
        "countertop 1": Receptacle("countertop 1", "countertop", contents=["apple 1", "mug 1"]),
        "diningtable 1": Receptacle("diningtable 1", "diningtable"),
        "fridge 1": Receptacle("fridge 1", "fridge", contents=["apple 2"]),
        "microwave 1": Receptacle("microwave 1", "microwave"),
    }
    items = {n: Item(n, n.split()[0]) for n in ("apple 1", "apple 2", "mug 1")}
    dest = None if task_type == "look_at_obj_in_light" else "diningtable"
    if dest is None:
        items["desklamp 1"] = Item("desklamp 1", "desklamp")
        receptacles["diningtable 1"].contents.append("desklamp 1")
    env = make("alfworld", 0, list_actions=False, **params)
    env.world = World(task_type, "apple", dest, TASKS[task_type][3].format(obj="apple", dest=dest), receptacles, items)
    return env


def play(env: Alfworld, actions: list[str]) -> list[tuple[str, float, bool]]:
    results = [env.step(a) for a in actions]
    return [(r.observation, r.reward, r.done) for r in results]


def test_alfworld_is_registered_and_each_seed_replays_exactly():
    assert "alfworld" in ENVS.names()
    resets = [make("alfworld", seed).reset() for seed in range(30)]
    assert len(set(resets)) == 30  # different seeds, different worlds
    for seed in (0, 7):
        a, b = make("alfworld", seed), make("alfworld", seed)
        rng_a, rng_b = random.Random(1), random.Random(1)
        for _ in range(12):
            if a.done:
                break
            ra, rb = a.step(rng_a.choice(a.valid_actions())), b.step(rng_b.choice(b.valid_actions()))
            assert (ra.observation, ra.reward, ra.done) == (rb.observation, rb.reward, rb.done)
        assert a.reset() == resets[seed] and a.rounds == 0 and not a.done  # reset starts the same world again


def test_the_first_observation_lists_the_room_the_goal_and_the_valid_actions():
    env = make("alfworld", 0)
    assert env.reset() == (
        "You are in the middle of a room. Looking quickly around you, you see a coffeemachine 1, a diningtable 1, "
        "a drawer 1, a fridge 1, a garbagecan 1, a sinkbasin 1, a stoveburner 1, and a toaster 1.\n"
        "Your task is to: put a pot in fridge.\n"
        "Actions: go to coffeemachine 1, go to diningtable 1, go to drawer 1, go to fridge 1, go to garbagecan 1, "
        "go to sinkbasin 1, go to stoveburner 1, go to toaster 1, inventory, look\n"
    )
    assert "Actions:" not in make("alfworld", 0, list_actions=False).reset()
    assert "Actions:" not in make("alfworld", 0, min_receptacles=9, max_receptacles=12).reset()  # big: off by default


def test_observations_use_alfworld_phrasing():
    env = handmade()
    assert play(env, ["look", "inventory", "go to fridge 1", "open fridge 1", "take apple 2 from fridge 1"]) == [
        ("You are in the middle of a room. Looking quickly around you, you see a countertop 1, a diningtable 1, "
         "a fridge 1, and a microwave 1.\n", 0.0, False),
        ("You are not carrying anything.\n", 0.0, False),
        ("You arrive at fridge 1. The fridge 1 is closed.\n", 0.0, False),
        ("You open the fridge 1. The fridge 1 is open. In it, you see a apple 2.\n", 0.0, False),
        ("You pick up the apple 2 from the fridge 1.\n", 0.0, False),
    ]  # fmt: skip
    assert play(env, ["cool apple 2 with fridge 1", "examine apple 2", "inventory", "go to countertop 1"]) == [
        ("You cool the apple 2 using the fridge 1.\n", 0.0, False),
        ("The apple 2 is cool.\n", 0.0, False),
        ("You are carrying: a apple 2.\n", 0.0, False),
        ("You arrive at countertop 1. On the countertop 1, you see a apple 1, and a mug 1.\n", 0.0, False),
    ]
    assert env.valid_actions() == [
        "go to diningtable 1", "go to fridge 1", "go to microwave 1", "put apple 2 in/on countertop 1",
        "examine countertop 1", "examine apple 2", "inventory", "look",
    ]  # fmt: skip
    facing = "You are facing the countertop 1. On the countertop 1, you see a apple 1, a mug 1, and a apple 2.\n"
    assert play(env, ["put apple 2 on countertop 1", "look"]) == [
        ("You put the apple 2 in/on the countertop 1.\n", 0.0, False),
        (facing, 0.0, False),
    ]


def test_solving_pays_1_and_shaping_pays_0_2_per_subgoal_once():
    plain = handmade()
    heat = [
        "go to countertop 1",
        "take apple 1 from countertop 1",
        "go to microwave 1",
        "heat apple 1 with microwave 1",
    ]
    place = ["go to diningtable 1", "put apple 1 in diningtable 1"]
    assert [r for _, r, _ in play(plain, heat + place)] == [0.0] * 5 + [1.0]
    shaped = handmade(shaping=True)
    detour = [*heat[:2], "put apple 1 in/on countertop 1", *heat[1:], "heat apple 1 with microwave 1"]
    rewards = [r for _, r, _ in play(shaped, detour)]
    assert rewards == [0.0, 0.2, 0.0, 0.0, 0.0, 0.2, 0.0]  # taking again and heating again pay nothing more
    last = play(shaped, ["go to diningtable 1", "put apple 1 in/on diningtable 1"])
    assert last[-1] == ("You put the apple 1 in/on the diningtable 1.\n", 1.0, True)
    assert shaped.done and sum(rewards) + 1.0 == pytest.approx(1.4)  # 1 + 0.2 * 2


def test_pick_two_pays_three_subgoals_and_light_needs_the_lamp_on_while_holding():
    env = handmade("pick_two_obj_and_place", shaping=True)
    first = [
        "go to countertop 1",
        "take apple 1 from countertop 1",
        "go to diningtable 1",
        "put apple 1 in/on diningtable 1",
    ]
    second = ["go to fridge 1", "open fridge 1", "take apple 2 from fridge 1", "go to diningtable 1"]
    second.append("put apple 2 in/on diningtable 1")
    assert [r for _, r, _ in play(env, first + second)] == [0, 0.2, 0, 0.2, 0, 0, 0.2, 0, 1.0]
    light = handmade("look_at_obj_in_light", shaping=True)
    assert light.world.goal == "look at apple under the desklamp."
    steps = ["go to diningtable 1", "use desklamp 1", "go to countertop 1", "take apple 1 from countertop 1"]
    arrive = "You arrive at diningtable 1. On the diningtable 1, you see a desklamp 1.\n"
    assert play(light, [*steps, "go to diningtable 1"])[-1] == (arrive, 1.0, True)
    assert light.rounds == 5 and light.paid == {"lamp on", "holding a target"}


def test_shaping_cannot_outpay_solving():
    assert max(MILESTONES.values()) == 3 and round(MAX_UNSOLVED_RETURN, 9) == 0.6
    for seed in range(200):
        env = make("alfworld", seed, shaping=True, max_rounds=40)
        rng = random.Random(seed)
        record = run_episode(env, lambda t, env=env, rng=rng: rng.choice(env.valid_actions()))
        bound = 0.2 * MILESTONES[env.world.task_type] + (1.0 if record["success"] else 0.0)  # unsolved: <= 0.6
        assert record["return"] <= bound + 1e-9 and (record["return"] >= 1.0) == record["success"], seed


def test_the_expert_solves_every_seed_and_earns_the_full_shaped_return():
    rounds = []
    for seed in range(200):
        env = make("alfworld", seed, shaping=True)
        record = run_episode(env, lambda t, env=env: env.expert_action())
        assert record["success"], seed
        assert record["return"] == pytest.approx(1.0 + 0.2 * MILESTONES[env.world.task_type])
        rounds.append(len(record["turns"]))
    assert max(rounds) <= 11 and 5.5 < statistics.mean(rounds) < 6.5  # measured 6.07


def test_the_expert_recovers_from_a_random_start():
    for seed in range(100):
        env = make("alfworld", seed, max_rounds=40)
        rng = random.Random(seed)
        for _ in range(8):
            if not env.done:
                env.step(rng.choice(env.valid_actions()))
        while not env.done:
            env.step(env.expert_action())
        assert env.world.solved(), seed


def test_a_random_valid_action_baseline_rarely_solves():
    wins, returns = 0, []
    for seed in range(200):
        env = make("alfworld", seed, shaping=True)
        rng = random.Random(f"random:{seed}")
        record = run_episode(env, lambda t, env=env, rng=rng: rng.choice(env.valid_actions()))
        wins += record["success"]
        returns.append(record["return"])
    assert wins == 1 and statistics.mean(returns) == pytest.approx(0.042)  # measured: 0.5% vs the expert's 100%


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  \n\t ",
        "go to fridge 1\ngo to countertop 1",
        "Thought: two.\nAction: look\nAction: inventory",
        "Action: look\nand some chatter",
        "Action:",
        "Thought: only thinking",
        "take apple 1 from countertop 1",  # not valid from the middle of the room
        "go to bathtubbasin 1",
        "fly to the moon",
        "x" * 10_000,
        "look\n" * 2_000,
        "\udcff",
        "go to \udcff fridge 1",
        "\x00\xff\x80",
    ],
)
def test_malformed_replies_are_invalid_steps_and_never_raise(text):
    env = handmade(shaping=True)
    before = env.valid_actions()
    result = env.step(text)
    assert result.observation == INVALID_OBSERVATION + "\n" and result.reward == 0.0 and not result.done
    assert result.info == {"success": False, "invalid": True, "truncated": False}
    assert env.rounds == 1 and env.valid_actions() == before  # counted, and the world did not change


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Thought: the fridge.\nAction: Go  To Fridge 1.", "go to fridge 1"),
        ("  look  ", "look"),
        ("Action: put apple 1 in fridge 1", "put apple 1 in/on fridge 1"),
        ("put apple 1 on countertop 1", "put apple 1 in/on countertop 1"),
        ("Thought: one\nAction: look\nAction: look", None),
        ("look\nlook", None),
        ("Action:  .", None),
    ],
)
def test_a_reply_holds_exactly_one_action(text, action):
    assert parse_single_action(text) == action


def test_hitting_max_rounds_ends_with_done_and_reward_0_even_with_a_subgoal():
    env = handmade(shaping=True, max_rounds=2)
    first, last = env.step("go to countertop 1"), env.step("take apple 1 from countertop 1")  # a subgoal, yet 0
    assert not first.done and (last.reward, last.done) == (0.0, True)
    assert last.info == {"success": False, "invalid": False, "truncated": True}
    with pytest.raises(RuntimeError, match="reset"):
        env.step("look")
    junk = make("alfworld", 3, max_rounds=3)
    assert [r.done for r in (junk.step(""), junk.step("?"), junk.step("\udcff"))] == [False, False, True]


def test_generated_worlds_respect_the_size_and_never_start_solved():
    kinds = set()
    for seed in range(200):
        env = make("alfworld", seed, min_receptacles=3, max_receptacles=4, min_objects=2, max_objects=3)
        w = env.world
        kinds.add(w.task_type)
        assert 3 <= len(w.receptacles) <= 4 and 2 <= sum(i.kind != "desklamp" for i in w.items.values()) <= 3
        assert not w.solved() and w.location is None and w.holding is None
        assert all(w.items[n].kind != w.target for r in w.receptacles.values() if r.kind == w.dest for n in r.contents)
    assert kinds == set(TASK_TYPES)


def test_config_refuses_bad_ranges_and_unknown_task_types():
    with pytest.raises(ValidationError, match="must not exceed"):
        make("alfworld", 0, min_receptacles=8, max_receptacles=6)
    with pytest.raises(ValidationError, match="task_types"):
        make("alfworld", 0, task_types=["pick_and_fly"])
    with pytest.raises(ValidationError, match="unknown key 'rooms'"):
        make("alfworld", 0, rooms=3)
    only_heat = [make("alfworld", s, task_types=["pick_heat_then_place_in_recep"]).world for s in range(10)]
    assert {w.task_type for w in only_heat} == {"pick_heat_then_place_in_recep"}


def test_expert_episode_records_round_trip_through_json():
    env = make("alfworld", 11, shaping=True)
    record = run_episode(env, lambda transcript: env.expert_action())
    assert json.loads(json.dumps(record)) == record
    assert record["env"] == "alfworld" and record["seed"] == 11 and record["success"] is True
    assert record["turns"][0]["observation"] == env.reset()
    assert record["return"] == pytest.approx(sum(t["reward"] for t in record["turns"]))
