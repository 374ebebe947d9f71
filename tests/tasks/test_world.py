"""The action world: the simulator names the step whose precondition fails, the phase planner's plans execute and
are as short as breadth-first search finds, and plans survive compact text ↔ graph round trips."""

import itertools

import pytest

from trainguard.constraints.library.plan import PlanError, parse_plan
from trainguard.tasks.world import (
    WORLD,
    Step,
    StepError,
    check_facts,
    graph_to_plan,
    join_cover,
    parse_facts,
    parse_plan_text,
    plan_for,
    plan_to_graph,
    render_facts,
    render_plan,
    solve,
)


def test_a_missing_precondition_names_the_step_and_the_fact():
    run = WORLD.execute(parse_plan_text("get a;cut a b;join a b"), [], ["joined:a-b"])
    assert (run.ok, run.failed_step, run.executed) == (False, 2, 1)
    assert run.reason == "step 2 'cut a b' needs have:b"
    assert run.final_state == {"have:a"}  # the state before the failing step


def test_a_plan_that_runs_but_misses_the_goal_says_which_fact():
    run = WORLD.execute(parse_plan_text("get a;paint a;cut a"), [], ["painted:a", "cut:a"])
    assert run.preconditions_held and not run.ok
    assert run.reason == "goal not reached: painted:a missing"  # cutting strips the paint


def test_join_links_consecutive_parts_and_start_facts_count():
    run = WORLD.execute([Step("join", ("c", "a", "b"))], ["cut:a", "cut:b", "cut:c"], ["joined:c-a", "joined:a-b"])
    assert run.ok and run.final_state == {"cut:a", "cut:b", "cut:c", "joined:c-a", "joined:a-b"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty plan"),
        ("get a;;cut a", "step 2 is empty"),
        ("slice a", "step 1: unknown action 'slice' (allowed: get, cut, paint, join)"),
        ("get a;join a", "step 2: join takes 2–3 parts, got 1"),
        ("get a z", "step 1: unknown part 'z' (parts: a b c d e)"),
        ("get a a", "step 1: 'get a a' names a part twice"),
        ("get a b c d", "step 1: get takes 1–3 parts, got 4"),
    ],
)
def test_bad_plan_text_is_refused_with_the_step(text, message):
    with pytest.raises(StepError) as err:
        parse_plan_text(text)
    assert str(err.value) == message


def test_compact_text_allows_spaces_around_separators():
    assert parse_plan_text(" get a b ;  cut a\n") == [Step("get", ("a", "b")), Step("cut", ("a",))]


def test_the_phase_planner_orders_get_cut_join_paint_and_groups_parts():
    goal = ["joined:a-b", "joined:b-c", "painted:a", "cut:d"]
    assert render_plan(plan_for(goal)) == "get a b c;get d;cut a b c;cut d;join a b c;paint a"
    assert render_plan(plan_for(["painted:a", "cut:a"], ["painted:a"])) == "get a;cut a;paint a"  # repaint after cut
    assert plan_for(["painted:a"], ["painted:a"]) == []
    assert render_plan(plan_for(["cut:b"], ["have:b"])) == "cut b"


def test_join_cover_chains_two_edges_into_one_step():
    assert join_cover([("a", "b"), ("b", "c")]) == [("a", "b", "c")]
    assert join_cover([("b", "c"), ("a", "b")]) == [("a", "b", "c")]
    assert join_cover([("a", "b"), ("b", "a")]) == [("a", "b"), ("b", "a")]  # a b a repeats a part
    assert len(join_cover([("a", "b"), ("b", "c"), ("c", "a")])) == 2


def small_problems() -> list[tuple[list[str], list[str]]]:
    """Goals of up to two facts over parts a, b (every one), each from nothing and from two start states."""
    facts = ["cut:a", "cut:b", "painted:a", "painted:b", "joined:a-b", "joined:b-a"]
    goals = [list(g) for k in (1, 2) for g in itertools.combinations(facts, k)]
    starts = [[], ["have:a", "painted:b"], ["cut:a"]]
    return [(g, s) for g in goals for s in starts]


def test_phase_plans_execute_and_are_as_short_as_breadth_first_search():
    problems = small_problems()
    assert len(problems) == 63
    for goal, start in problems:
        plan = plan_for(goal, start)
        assert WORLD.execute(plan, start, goal).ok, (goal, start)
        shortest = solve(WORLD, start, goal, max_steps=5)
        assert shortest is not None and WORLD.execute(shortest, start, goal).ok
        assert len(plan) == len(shortest), (goal, start, plan, shortest)


def test_solve_finds_the_two_step_chain_join():
    assert render_plan(solve(WORLD, ["have:a", "have:b", "have:c"], ["joined:a-b", "joined:b-c"]) or []) == (
        "cut a b c;join a b c"
    )


def test_compact_and_graph_forms_round_trip():
    plan = parse_plan_text("get a b;cut a b;join a b;paint a")
    graph = plan_to_graph(plan)
    assert graph["nodes"][2] == {"id": "s3", "action": "join a b", "preconditions": ["cut:a", "cut:b"]}
    assert graph["edges"] == [
        {"from": "s1", "to": "s2", "type": "then"},
        {"from": "s2", "to": "s3", "type": "then"},
        {"from": "s3", "to": "s4", "type": "then"},
    ]
    assert parse_plan(graph).number_of_nodes() == 4  # the constraint library reads it
    assert graph_to_plan(graph) == plan
    assert render_plan(graph_to_plan(plan_to_graph(parse_plan_text("get c")))) == "get c"


def test_graph_order_follows_edges_not_listing():
    graph = plan_to_graph(parse_plan_text("get a;cut a;paint a"))
    graph["nodes"] = graph["nodes"][::-1]
    assert render_plan(graph_to_plan(graph)) == "get a;cut a;paint a"


def test_bad_graphs_are_refused_with_reasons():
    graph = plan_to_graph(parse_plan_text("get a;cut a"))
    with pytest.raises(PlanError, match="cycle"):
        graph_to_plan({**graph, "edges": [*graph["edges"], {"from": "s2", "to": "s1", "type": "then"}]})
    wrong_pre = {**graph, "nodes": [graph["nodes"][0], {**graph["nodes"][1], "preconditions": ["cut:a"]}]}
    with pytest.raises(StepError, match=r"node 's2': preconditions \['cut:a'\] are not the world's \['have:a'\]"):
        graph_to_plan(wrong_pre)
    with pytest.raises(StepError, match="node 's1': unknown action 'fly'"):
        graph_to_plan({"nodes": [{"id": "s1", "action": "fly a"}], "edges": []})
    with pytest.raises(StepError, match="one step per node"):
        graph_to_plan({"nodes": [{"id": "s1", "action": "get a;cut a"}], "edges": []})


def test_facts_render_grouped_and_parse_back():
    facts = ["cut:b", "joined:a-b", "cut:a", "painted:c", "joined:b-c"]
    text = render_facts(facts)
    assert text == "cut b a, painted c, joined a-b b-c"
    assert parse_facts(text) == ["cut:b", "cut:a", "painted:c", "joined:a-b", "joined:b-c"]
    assert parse_facts("none") == []
    check_facts(facts)
    for bad in ("cut:z", "glued:a", "joined:a", "joined:a-a"):
        with pytest.raises(StepError):
            check_facts([bad])


@pytest.mark.slow
def test_phase_plans_are_shortest_for_every_goal_of_two_or_three_facts_over_three_parts():
    parts = "abc"
    facts = [f"cut:{x}" for x in parts] + [f"painted:{x}" for x in parts]
    facts += [f"joined:{x}-{y}" for x in parts for y in parts if x != y]
    goals = [list(g) for k in (2, 3) for g in itertools.combinations(facts, k)]
    assert len(goals) == 286
    for goal in goals:
        shortest = solve(WORLD, [], goal, max_steps=6)
        assert shortest is not None and len(plan_for(goal)) == len(shortest), goal
