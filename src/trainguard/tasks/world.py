"""BuilderBrain's action world: parts a–e, four actions with preconditions and effects, a simulator that runs a
plan step by step, and planners (a phase planner for references, a tiny BFS to check it).

Facts are strings: `have:a`, `cut:a`, `painted:a`, `joined:a-b`. A step acts on 1–3 distinct parts at once
(`get a b`, `join a b c` joins a-b and b-c), which keeps plans short enough for a byte-level model to write:
`get a b;cut a b;join a b`. Cutting a part strips its paint, so order matters beyond the preconditions.
"""

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations, pairwise, permutations
from typing import Any

Fact = str
State = frozenset[Fact]


class StepError(ValueError):
    """Text that is not a step or plan of this world; the message says which step and why."""


@dataclass(frozen=True)
class Action:
    """An action schema over a list of distinct parts: every part must hold each `pre` predicate; every part
    gains `add` and loses `delete`; `link`, if set, is added for each consecutive pair (join a b c: a-b, b-c)."""

    name: str
    arity: tuple[int, int]
    pre: tuple[str, ...] = ()
    add: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    link: str | None = None

    def preconditions(self, parts: tuple[str, ...]) -> list[Fact]:
        return [f"{p}:{x}" for x in parts for p in self.pre]

    def adds(self, parts: tuple[str, ...]) -> list[Fact]:
        linked = [f"{self.link}:{x}-{y}" for x, y in pairwise(parts)] if self.link else []
        return [f"{p}:{x}" for x in parts for p in self.add] + linked

    def deletes(self, parts: tuple[str, ...]) -> list[Fact]:
        return [f"{p}:{x}" for x in parts for p in self.delete]


@dataclass(frozen=True)
class Step:
    action: str
    parts: tuple[str, ...]

    def text(self) -> str:
        return " ".join((self.action, *self.parts))


@dataclass(frozen=True)
class Execution:
    """What running a plan did: `ok` when every precondition held at its step and the goal holds at the end;
    `failed_step` is 1-based (None when every step ran); `executed` counts the steps that ran."""

    ok: bool
    failed_step: int | None
    reason: str
    final_state: State
    executed: int

    @property
    def preconditions_held(self) -> bool:
        return self.failed_step is None


@dataclass(frozen=True)
class World:
    parts: tuple[str, ...]
    actions: dict[str, Action] = field(hash=False)

    def check_step(self, step: Step) -> None:
        """StepError unless the step names a known action on the right number of distinct known parts."""
        action = self.actions.get(step.action)
        if action is None:
            raise StepError(f"unknown action {step.action!r} (allowed: {', '.join(self.actions)})")
        low, high = action.arity
        if not low <= len(step.parts) <= high:
            raise StepError(f"{step.action} takes {low}–{high} parts, got {len(step.parts)}")
        unknown = [x for x in step.parts if x not in self.parts]
        if unknown:
            raise StepError(f"unknown part {unknown[0]!r} (parts: {' '.join(self.parts)})")
        if len(set(step.parts)) != len(step.parts):
            raise StepError(f"'{step.text()}' names a part twice")

    def apply(self, state: State, step: Step) -> tuple[State, list[Fact]]:
        """The state after `step`, and the preconditions that did not hold (the step does nothing if any)."""
        self.check_step(step)
        action = self.actions[step.action]
        missing = [f for f in action.preconditions(step.parts) if f not in state]
        if missing:
            return state, missing
        return (state - set(action.deletes(step.parts))) | set(action.adds(step.parts)), []

    def execute(self, plan: list[Step], initial: Iterable[Fact] = (), goal: Iterable[Fact] = ()) -> Execution:
        """Run `plan` from `initial`: stop at the first step whose precondition does not hold, naming it."""
        state: State = frozenset(initial)
        for number, step in enumerate(plan, start=1):
            try:
                after, missing = self.apply(state, step)
            except StepError as err:
                return Execution(False, number, f"step {number} '{step.text()}': {err}", state, number - 1)
            if missing:
                reason = f"step {number} '{step.text()}' needs {', '.join(missing)}"
                return Execution(False, number, reason, state, number - 1)
            state = after
        unmet = [f for f in goal if f not in state]
        reason = f"goal not reached: {', '.join(unmet)} missing" if unmet else "ok"
        return Execution(not unmet, None, reason, state, len(plan))

    def grounded(self, parts: tuple[str, ...]) -> list[Step]:
        """Every step over `parts`: unlinked actions on sets (order does nothing), linked ones on sequences."""
        steps = []
        for action in self.actions.values():
            low, high = action.arity
            for k in range(low, min(high, len(parts)) + 1):
                chosen = permutations(parts, k) if action.link else combinations(parts, k)
                steps.extend(Step(action.name, c) for c in chosen)
        return steps


def parts_of(facts: Iterable[Fact]) -> list[str]:
    """The parts facts mention, in order of first mention."""
    out: dict[str, None] = {}
    for fact in facts:
        for x in fact.split(":", 1)[1].split("-"):
            out.setdefault(x)
    return list(out)


def solve(world: World, initial: Iterable[Fact], goal: Iterable[Fact], max_steps: int = 6) -> list[Step] | None:
    """A shortest plan by breadth-first search over steps on the goal's parts only (others never help a goal of
    positive facts here); None when there is none within `max_steps`. Exponential: for checking, not generating."""
    goal = frozenset(goal)
    steps = world.grounded(tuple(parts_of(sorted(goal))))
    start: State = frozenset(initial)
    frontier, seen = deque([(start, ())]), {start}
    while frontier:
        state, plan = frontier.popleft()
        if goal <= state:
            return list(plan)
        if len(plan) == max_steps:
            continue
        for step in steps:
            after, missing = world.apply(state, step)
            if not missing and after not in seen:
                seen.add(after)
                frontier.append((after, (*plan, step)))
    return None


WORLD = World(
    parts=("a", "b", "c", "d", "e"),
    actions={
        "get": Action("get", (1, 3), add=("have",)),
        "cut": Action("cut", (1, 3), pre=("have",), add=("cut",), delete=("painted",)),
        "paint": Action("paint", (1, 3), pre=("have",), add=("painted",)),
        "join": Action("join", (2, 3), pre=("cut",), link="joined"),
    },
)
"""The default world: get (no precondition), cut (needs have; strips paint), paint (needs have), join (needs
cut; `join a b c` adds joined:a-b and joined:b-c)."""

PREDICATES = ("have", "cut", "painted", "joined")  # the order facts are rendered in


def chunks(items: list[str], size: int = 3) -> list[tuple[str, ...]]:
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def join_cover(edges: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Fewest join steps that add every edge: paths of one edge, or two chained edges x-y, y-z with z != x."""
    if not edges:
        return []
    first, rest = edges[0], edges[1:]
    best = [first, *join_cover(rest)]
    for other in rest:
        for x, y, z in ((*first, other[1]), (*other, first[1])):
            if (x, y) in (first, other) and (y, z) in (first, other) and len({x, y, z}) == 3:
                remaining = [e for e in rest if e != other]
                candidate = [(x, y, z), *join_cover(remaining)]
                if len(candidate) < len(best):
                    best = candidate
    return best


def plan_for(goal: Iterable[Fact], initial: Iterable[Fact] = ()) -> list[Step]:
    """A shortest plan in WORLD, built in phases: get, cut, join, paint.

    Why it is shortest: each step does one kind of action on at most three parts, so the parts that must be got,
    cut and painted (and the joins, by `join_cover`) each need at least ceil(k/3) steps of their kind, and these
    phases reach exactly that bound; they run in a valid order because nothing but cut deletes, and paint comes
    after it. `solve` agrees on every small goal (tests)."""
    goal, state = list(dict.fromkeys(goal)), frozenset(initial)

    def ordered(xs: Iterable[str]) -> list[str]:
        return sorted(set(xs))

    edges = [tuple(f.split(":", 1)[1].split("-")) for f in goal if f.startswith("joined:") and f not in state]
    to_cut = ordered(
        [f[4:] for f in goal if f.startswith("cut:") and f not in state]
        + [x for edge in edges for x in edge if f"cut:{x}" not in state]
    )
    to_paint = ordered(f[8:] for f in goal if f.startswith("painted:") and (f not in state or f[8:] in to_cut))
    to_get = ordered(x for x in [*to_cut, *to_paint, *(f[5:] for f in goal if f.startswith("have:"))])
    to_get = [x for x in to_get if f"have:{x}" not in state]
    return [
        *(Step("get", c) for c in chunks(to_get)),
        *(Step("cut", c) for c in chunks(to_cut)),
        *(Step("join", p) for p in join_cover(edges)),
        *(Step("paint", c) for c in chunks(to_paint)),
    ]


# -- text forms ------------------------------------------------------------------------------------------------
def render_plan(plan: list[Step]) -> str:
    """The compact form a model writes: `get a b;cut a b;join a b`."""
    return ";".join(step.text() for step in plan)


def parse_plan_text(text: str, world: World = WORLD) -> list[Step]:
    """Steps of a compact plan (`;` between steps, spaces around them allowed); StepError names the bad step."""
    text = text.strip()
    if not text:
        raise StepError("empty plan")
    plan = []
    for number, chunk in enumerate(text.split(";"), start=1):
        words = chunk.split()
        if not words:
            raise StepError(f"step {number} is empty")
        step = Step(words[0], tuple(words[1:]))
        try:
            world.check_step(step)
        except StepError as err:
            raise StepError(f"step {number}: {err}") from None
        plan.append(step)
    return plan


def render_facts(facts: Iterable[Fact]) -> str:
    """Facts grouped by predicate, parts in the order given: `cut a b, joined a-b b-c, painted c`."""
    groups: dict[str, list[str]] = {}
    for fact in facts:
        predicate, arg = fact.split(":", 1)
        groups.setdefault(predicate, []).append(arg)
    order = sorted(groups, key=lambda p: PREDICATES.index(p) if p in PREDICATES else len(PREDICATES))
    return ", ".join(" ".join((p, *groups[p])) for p in order)


def parse_facts(text: str) -> list[Fact]:
    """The inverse of `render_facts`; `none` or blank is no facts. StepError on a group without arguments."""
    text = text.strip()
    if text in ("", "none"):
        return []
    facts = []
    for group in text.split(","):
        predicate, *args = group.split()
        if not args:
            raise StepError(f"facts group {group.strip()!r} names no part")
        facts.extend(f"{predicate}:{arg}" for arg in args)
    return facts


def check_facts(facts: Iterable[Fact], world: World = WORLD) -> None:
    """StepError unless every fact is `predicate:part` (or `joined:x-y`) over the world's parts."""
    for fact in facts:
        predicate, _, arg = str(fact).partition(":")
        args = arg.split("-")
        if predicate not in PREDICATES or len(args) != (2 if predicate == "joined" else 1):
            raise StepError(f"{fact!r} is not a fact (have:x, cut:x, painted:x or joined:x-y)")
        if any(a not in world.parts for a in args) or len(set(args)) != len(args):
            raise StepError(f"{fact!r} names an unknown or repeated part (parts: {' '.join(world.parts)})")


# -- the graph form (constraints.library.plan) -----------------------------------------------------------------
def plan_to_graph(plan: list[Step], world: World = WORLD) -> dict[str, Any]:
    """`{nodes: [{id, action, preconditions}], edges: [{from, to, type: "then"}]}`: a chain, one node per step."""
    nodes = [
        {"id": f"s{i}", "action": s.text(), "preconditions": world.actions[s.action].preconditions(s.parts)}
        for i, s in enumerate(plan, start=1)
    ]
    edges = [{"from": f"s{i}", "to": f"s{i + 1}", "type": "then"} for i in range(1, len(plan))]
    return {"nodes": nodes, "edges": edges}


def graph_to_plan(plan: Any, world: World = WORLD) -> list[Step]:
    """Steps of a plan graph in an order its edges allow (ties: the order nodes are listed); PlanError if the
    graph is malformed or has a cycle, StepError if a node's action is not a step, or its listed preconditions
    differ from the world's."""
    import networkx as nx

    from trainguard.constraints.library.plan import PlanError, parse_plan

    graph = parse_plan(plan, max_nodes=64)
    listed = {node: i for i, node in enumerate(graph.nodes)}
    try:
        order = list(nx.lexicographical_topological_sort(graph, key=lambda node: listed[node]))
    except nx.NetworkXUnfeasible:
        raise PlanError("the plan's edges form a cycle") from None
    steps = []
    for node in order:
        attrs = graph.nodes[node]
        if ";" in attrs["action"]:
            raise StepError(f"node {node!r}: one step per node, got {attrs['action']!r}")
        try:
            (step,) = parse_plan_text(attrs["action"], world)
        except StepError as err:
            raise StepError(f"node {node!r}: {str(err).removeprefix('step 1: ')}") from None
        declared, actual = set(attrs["preconditions"]), set(world.actions[step.action].preconditions(step.parts))
        if declared and declared != actual:  # an empty list means "not written out"
            raise StepError(f"node {node!r}: preconditions {sorted(declared)} are not the world's {sorted(actual)}")
        steps.append(step)
    return steps
