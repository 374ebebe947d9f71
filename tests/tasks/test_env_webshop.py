"""WebShop-lite as a specification: a seeded catalogue and goals, BM25 search, WebShop's purchase reward, an expert
that buys right, a random-valid-action baseline far below it, safe handling of bad replies, truncation and shaping."""

import json
import math
import random
from collections import Counter

import pytest
from pydantic import ValidationError

from trainguard.tasks.envs.base import ENVS, make, run_episode
from trainguard.tasks.envs.webshop import WebShop
from trainguard.tasks.envs.webshop_world import (
    PRODUCT_TYPES,
    Bm25Index,
    Goal,
    Product,
    ProductType,
    build_world,
    generate_catalogue,
    purchase_reward,
    type_reward,
)

TSHIRT, COFFEE_MUG, HOODIE, TRAVEL_MUG = PRODUCT_TYPES[:4]


def webshop(seed: int, **params: object) -> WebShop:
    env = make("webshop", seed, **params)
    assert isinstance(env, WebShop)
    return env


def expert_record(env: WebShop) -> dict:
    return run_episode(env, lambda transcript: env.expert_action())


def random_record(env: WebShop, seed: int) -> dict:
    rng = random.Random(seed)
    return run_episode(env, lambda transcript: rng.choice(env.valid_actions()))


def product(kind: ProductType, attributes: tuple[str, ...], price: float) -> Product:
    options = (("color", ("navy", "red")), ("size", ("small", "large")))
    return Product("p001", kind, f"orla {' '.join(attributes)} {kind.name}", attributes, options, price)


GOAL = Goal(TSHIRT, ("cotton", "slim fit"), (("color", "navy"),), 30.0, "p001", "i need ...")


def test_registered_and_the_first_page_shows_the_instruction_and_the_search_button():
    assert "webshop" in ENVS.names()
    assert webshop(0).reset() == (
        "Instruction: i need a machine washable t-shirt, color white, and price lower than 30.00 dollars\n"
        "[button] Search [button_]\n"
    )


def test_the_catalogue_is_a_few_hundred_products_spread_evenly_and_fixed_by_its_seed():
    products = generate_catalogue(0, 300, 4)
    assert products == generate_catalogue(0, 300, 4) and products != generate_catalogue(1, 300, 4)
    assert Counter(p.kind.name for p in products) == {"t-shirt": 75, "coffee mug": 75, "hoodie": 75, "travel mug": 75}
    assert len({p.asin for p in products}) == 300
    for p in products:
        lo, hi = p.kind.price_range
        assert 2 <= len(p.attributes) <= 3 and set(p.attributes) <= set(p.kind.attributes)
        assert lo <= p.price <= hi and all(p.title.endswith(p.kind.name) and a in p.title for a in p.attributes)
        assert all(2 <= len(values) < len(dict(p.kind.options)[axis]) for axis, values in p.options)


def test_the_same_seed_replays_the_same_pages_and_rewards_and_other_seeds_differ():
    replies = ["search[cotton t-shirt navy]", "click[next >]", "junk", "click[< prev]", "click[back to search]"]

    def play(seed: int) -> list[tuple[str, float, bool]]:
        env = webshop(seed, shaping=True)
        steps = [(env.reset(), 0.0, False)]
        for reply in replies:
            result = env.step(reply)
            steps.append((result.observation, result.reward, result.info["invalid"]))
        return steps

    assert play(4) == play(4)
    assert [s[2] for s in play(4)] == [False, False, False, True, False, False]
    assert [s[1] for s in play(4)] == [0.0, 0.1, 0.0, 0.0, 0.0, 0.0]
    first_pages = {webshop(seed).reset() for seed in range(50)}
    assert len(first_pages) >= 45  # goals are drawn per seed; a repeat needs the same product, attributes and bound


def test_bm25_scores_match_the_formula_worked_by_hand():
    index = Bm25Index(["red mug", "red red shirt", "blue shirt"])  # N=3, avgdl=7/3, k1=0.9, b=0.4
    # idf(red) = ln(1 + (3-2+0.5)/(2+0.5)) = ln 1.6; idf(mug) = ln(1 + 2.5/1.5) = ln(8/3)
    # doc 0: norm = 0.9·(0.6 + 0.4·2/(7/3)) = 0.848571; each term: idf·1·1.9/(1 + 0.848571)
    assert index.score("red mug", 0) == pytest.approx(1.491196, abs=1e-6)
    # doc 1: norm = 0.9·(0.6 + 0.4·3/(7/3)) = 1.002857; red: ln 1.6 · 2·1.9/(2 + 1.002857)
    assert index.score("red", 1) == pytest.approx(0.594771, abs=1e-6)
    assert index.score("Red RED mug", 0) == pytest.approx(index.score("red mug", 0))  # distinct terms, any case
    assert index.rank("red", 5) == [1, 0] and index.rank("shirt", 1) == [2]  # shorter doc wins the tf tie
    assert index.rank("green", 5) == [] and math.isclose(index.idf["shirt"], math.log(1.6))


def test_purchase_reward_follows_webshop_formula():
    # (|U_att ∩ Y_att| + |U_opt ∩ Y_opt| + 1[price ok]) / (|U_att| + |U_opt| + 1), times r_type
    shirt = product(TSHIRT, ("cotton", "v-neck"), 24.5)
    assert purchase_reward(GOAL, shirt, {"color": "navy"}) == pytest.approx(3 / 4)  # 1 attr + option + price
    assert purchase_reward(GOAL, shirt, {"color": "red"}) == pytest.approx(2 / 4)
    assert purchase_reward(GOAL, shirt, {}) == pytest.approx(2 / 4)  # an option never clicked does not match
    assert purchase_reward(GOAL, product(TSHIRT, ("cotton", "v-neck"), 30.01), {"color": "navy"}) == 0.5
    perfect = product(TSHIRT, ("cotton", "slim fit", "organic"), 30.0)  # the bound itself is allowed (≤)
    assert purchase_reward(GOAL, perfect, {"color": "navy", "size": "large"}) == 1.0
    assert purchase_reward(GOAL, product(HOODIE, ("cotton", "slim fit"), 10.0), {"color": "navy"}) == 0.0


def test_type_reward_applies_webshop_rules_to_category_and_title_nouns():
    assert type_reward(TSHIRT, TSHIRT) == 1.0
    assert type_reward(TSHIRT, HOODIE) == 0.0  # two category levels shared, but no title noun: 0
    assert type_reward(COFFEE_MUG, TRAVEL_MUG) == 1.0  # one of two nouns (0.5 > 0.2) and the category

    def kind(category: tuple[str, ...], nouns: tuple[str, ...]) -> ProductType:
        return ProductType("x", category, nouns, (), (), (1, 2))

    wanted = kind(("a", "b", "c"), tuple("abcdefghijk"))  # 11 nouns
    assert type_reward(kind(("z",), ("a", "b")), kind(("z",), ("a", "q"))) == 1.0  # name match ("x")
    five = kind(("a", "b", "c"), tuple("abcde"))
    other = ProductType("y", ("p", "q", "r"), ("a",), (), (), (1, 2))
    assert type_reward(five, other) == 0.5  # 1/5 = 0.2 is not above 0.2 and nothing else matches
    assert type_reward(kind(("a",), tuple("abcdefghij")), other) == 0.5  # 1/10 = 0.1 is not below 0.1
    assert type_reward(wanted, other) == 0.1  # 1/11 < 0.1
    assert type_reward(five, ProductType("y", ("a", "b"), ("a",), (), (), (1, 2))) == 1.0  # category match


def test_pages_list_their_buttons_and_an_option_click_shows_as_clicked():
    env = webshop(0)
    result = env.step("Thought: find a shirt\nAction: search[machine washable t-shirt white]")
    lines = result.observation.splitlines()
    assert lines[:3] == ["[button] Back to Search [button_]", "Page 1 (Total results: 9)", "[button] Next > [button_]"]
    assert env.valid_actions()[:2] == ["click[back to search]", "click[next >]"] and len(env.valid_actions()) == 5
    asin = env.valid_actions()[2][6:-1]
    item = env.world.products[env.world.by_asin[asin]]
    assert lines[3] == f"[button] {asin} [button_] {item.title} ${item.price:.2f}"
    page = env.step(f"click[{asin.upper()}]").observation  # clicks are case-insensitive, as in WebShop
    assert page.splitlines()[-3:] == [item.title, f"Price: ${item.price:.2f}", "[button] Buy Now [button_]"]
    colors = dict(item.options)["color"]
    env.step(f"click[{colors[0]}]")
    page = env.step(f"click[{colors[1]}]").observation  # a second value on the same axis replaces the first
    assert env.selected == {"color": colors[1]}
    assert f"[clicked button] {colors[1]} [clicked button_]" in page and page.count("[clicked button]") == 1
    assert env.step("click[< prev]").observation.startswith("[button] Back to Search [button_]\nPage 1 ")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n ",
        "Action:",
        "search[]",
        "search[  ]",
        "click[buy now]",  # a button, but not on the search page
        "buy",
        "search[mug] search[shirt]",  # several actions on one line
        "Thought: two at once\nAction: search[mug]\nsearch[shirt]",  # several actions on two lines
        "search[" + "a" * 10_000 + "]",  # 10 kB
        "x" * 10_240,
        "search[mug\udcff]",  # a lone surrogate, what non-UTF-8 bytes decode to with surrogateescape
        "\udcff",
        "\x00\xff",
        "search[mug]]",
        "Search mug",
    ],
)
def test_malformed_replies_on_the_search_page_are_invalid_steps_not_errors(text):
    env = webshop(2, shaping=True)
    result = env.step(text)
    assert result.observation == "invalid action: reply search[your query]\n"
    assert (result.reward, result.done, env.rounds, env.page) == (0.0, False, 1, "search")
    assert result.info == {"success": False, "invalid": True, "truncated": False}


@pytest.mark.parametrize(
    "text", ["search[mug]", "click[p999]", "click[next >] click[back to search]", "click[buy now]", "click[< prev]"]
)
def test_replies_not_in_the_valid_list_of_a_results_page_are_invalid(text):
    env = webshop(2)
    env.step("search[cotton t-shirt]")
    before = (env.page, env.page_no, list(env.results))
    result = env.step(text)
    assert result.observation == "invalid action: reply click[a button on this page]\n"
    assert result.info["invalid"] is True and env.rounds == 2 and (env.page, env.page_no, env.results) == before


def test_hitting_max_rounds_ends_the_episode_with_reward_0_even_with_shaping():
    env = webshop(1, max_rounds=3, shaping=True)
    assert env.step("search[mug]").reward == pytest.approx(0.1)
    assert env.step("click[back to search]").reward == 0.0
    last = env.step("nonsense")
    assert (last.done, last.reward, env.rounds) == (True, 0.0, 3)
    assert last.info == {"success": False, "invalid": True, "truncated": True}
    first_and_last = webshop(1, max_rounds=1, shaping=True).step("search[mug]")  # the bonus is not paid either
    assert (first_and_last.done, first_and_last.reward, first_and_last.info["truncated"]) == (True, 0.0, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("search[mug]")


def test_shaping_pays_0_1_for_the_first_search_0_3_for_the_first_wanted_type_item_and_the_purchase_reward():
    env = webshop(0, shaping=True)  # the goal is a t-shirt
    assert env.step("search[oversized hoodie]").reward == pytest.approx(0.1)
    assert env.step("click[p440]").reward == 0.0  # a hoodie: r_type 0, no bonus
    assert env.step("click[back to search]").reward == 0.0
    assert env.step("search[machine washable t-shirt white]").reward == 0.0  # only the first search pays
    shirt = env.valid_actions()[2]
    assert env.step(shirt).reward == pytest.approx(0.3)
    assert env.step("click[< prev]").reward == 0.0 and env.step(shirt).reward == 0.0  # only once
    bought = env.step("click[buy now]")
    expected = purchase_reward(env.goal, env.item, {})
    assert bought.reward == pytest.approx(expected) and 0.0 < expected < 1.0
    assert bought.done and bought.info["success"] is False and bought.info["truncated"] is False
    assert bought.observation == f"Thank you for shopping with us!\nYour score (min 0.0, max 1.0): {expected:.2f}\n"
    plain = webshop(0)
    assert plain.step("search[machine washable t-shirt white]").reward == 0.0 and plain.step(shirt).reward == 0.0


def test_the_expert_buys_a_perfect_product_on_at_least_95_percent_of_200_seeds():
    records = [expert_record(webshop(seed)) for seed in range(200)]
    successes = sum(r["success"] for r in records)
    assert successes >= 190 and successes == 200  # measured: every seed
    rounds = [len(r["turns"]) for r in records]
    assert min(rounds) >= 3 and max(rounds) <= 6 and 3.5 < sum(rounds) / 200 < 4.5  # measured mean 4.04
    assert all(r["return"] == 1.0 for r in records)


def test_the_random_valid_action_baseline_is_far_below_the_expert():
    records = [random_record(webshop(seed), seed) for seed in range(200)]
    success = sum(r["success"] for r in records) / 200
    mean_return = sum(r["return"] for r in records) / 200
    assert (success, round(mean_return, 3)) == (0.07, 0.315)  # measured; the expert scores 1.0 and 1.0
    bought = sum(r["turns"][-1]["action"] == "click[buy now]" for r in records)
    assert bought == 200 - sum(len(r["turns"]) == 10 and r["return"] == 0.0 for r in records)  # the rest timed out


def test_the_expert_searches_the_target_title_when_a_search_found_nothing_perfect():
    env = webshop(0)
    assert env.step("search[zzz]").observation == "[button] Back to Search [button_]\nPage 1 (Total results: 0)\n"
    assert env.expert_action() == "click[back to search]"
    env.step(env.expert_action())
    target = env.world.products[env.world.by_asin[env.goal.target]]
    assert env.expert_action() == f"search[{target.title}]"
    while not env.done:
        result = env.step(env.expert_action())
    assert result.info["success"] is True and result.reward == 1.0


def test_an_expert_episode_record_round_trips_through_json():
    env = webshop(3, shaping=True)
    record = expert_record(env)
    assert json.loads(json.dumps(record)) == record
    assert record["env"] == "webshop" and record["seed"] == 3 and record["success"] is True
    assert record["turns"][0]["observation"] == webshop(3).reset()
    assert record["turns"][0]["action"] == f"search[{env.goal.instruction}]"
    assert record["turns"][-1]["action"] == "click[buy now]"
    assert record["return"] == pytest.approx(0.1 + 0.3 + 1.0)  # both shaping bonuses and a perfect purchase


def test_the_config_refuses_unknown_keys_and_impossible_sizes():
    with pytest.raises(ValidationError, match="unknown key 'size'"):
        make("webshop", 0, size=3)
    with pytest.raises(ValidationError, match="n_products"):
        make("webshop", 0, n_products=3, n_types=4)
    with pytest.raises(ValidationError, match="n_types"):
        make("webshop", 0, n_types=len(PRODUCT_TYPES) + 1)
    small = webshop(0, n_products=20, n_types=2, results_per_page=2, max_results=4, goal_options=0)
    assert len(small.world.products) == 20 and build_world(0, 20, 2) is small.world  # built once per setting
    assert expert_record(small)["success"] is True
