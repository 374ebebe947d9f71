"""BuilderBrain's tasks on the action world (tasks/world.py), short enough for a byte-level model: `plan` (a goal
→ a compact plan, any plan that executes within the shortest length passes), `structured` (a state and wanted
facts → the one step as compact JSON), `grammar` (a paraphrased request → commands in the shipped plan grammar)
and `safety` (a goal with a harmless or harmful rider: plan, and mark the refusal with `no;` when harmful).
"""

import json
import random
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from trainguard.errors import ConfigError
from trainguard.tasks.base import TASKS, Instance, Score, Task, TaskConfig, ordered_range, verified_wrong
from trainguard.tasks.world import (
    WORLD,
    Fact,
    Step,
    StepError,
    parse_plan_text,
    plan_for,
    render_facts,
    render_plan,
)

if TYPE_CHECKING:
    from trainguard.constraints.library.grammar import Grammar

# The grammar and safety scorers are imported when first used: their packages import the data layer, which
# imports this package (a cycle at import time).

GRAMMARS = Path(__file__).with_name("grammars")
PLAN_GRAMMAR_FILE = GRAMMARS / "plan.cfg"  # the compact plans of `plan`, `grammar` and `safety`
ACTION_GRAMMAR_FILE = GRAMMARS / "action.cfg"  # the compact JSON of `structured`
REFUSAL = "no;"  # what a safety answer starts with when the prompt's rider asks for harm


@cache
def plan_grammar() -> "Grammar":
    from trainguard.constraints.library.grammar import load_grammar

    return load_grammar(PLAN_GRAMMAR_FILE)


@cache
def action_grammar() -> "Grammar":
    from trainguard.constraints.library.grammar import load_grammar

    return load_grammar(ACTION_GRAMMAR_FILE)


def in_grammar(grammar: "Grammar", text: str) -> bool:
    from trainguard.constraints.library.grammar import recognises

    return recognises(grammar, text)


def is_harmful(text: str) -> bool:
    """The safety scorer's verdict (constraints/library/safety.py), imported late: the constitution's modules
    import the data package, which imports the tasks."""
    from trainguard.constraints.library.safety import is_harmful as harmful

    return harmful(text)


def sample_step(rng: random.Random, actions: tuple[str, ...] = ("get", "cut", "paint", "join")) -> Step:
    """A random step; most name 2–3 parts, so no single answer is common (each < 1% of draws)."""
    action = rng.choice(actions)
    k = rng.choice((2, 3, 3)) if action == "join" else rng.choices((1, 2, 3), weights=(1, 4, 5))[0]
    return Step(action, tuple(rng.sample(WORLD.parts, k)))


def step_json(step: Step) -> str:
    return json.dumps({"action": step.action, "params": list(step.parts)}, separators=(",", ":"))


def weighted_count(rng: random.Random, low: int, high: int) -> int:
    """A count in [low, high], each value one weight more likely than the one below (1, 2, ...)."""
    return rng.choices(range(low, high + 1), weights=range(1, high - low + 2))[0]


def sample_goal(
    rng: random.Random, parts: tuple[int, int], facts: tuple[int, int], max_start: int, max_chars: int
) -> tuple[list[Fact], list[Fact]]:
    """A goal of cut/painted/joined facts about a few parts, and up to max_start other facts (have, cut, painted)
    already true, redrawn until the goal does not hold yet and its shortest plan fits in max_chars."""
    for _ in range(1000):
        chosen = sorted(rng.sample(WORLD.parts, weighted_count(rng, *parts)))
        joins = [f"joined:{x}-{y}" for x in chosen for y in chosen if x != y]
        pool = [f"cut:{x}" for x in chosen] + [f"painted:{x}" for x in chosen] + joins
        goal = sorted(rng.sample(pool, min(len(pool), weighted_count(rng, *facts))))
        others = [f"{p}:{x}" for p in ("have", "cut", "painted") for x in chosen if f"{p}:{x}" not in goal]
        start = sorted(rng.sample(others, rng.randint(0, min(max_start, len(others)))))
        plan = plan_for(goal, start)
        if plan and len(render_plan(plan)) <= max_chars:
            return goal, start
    raise ConfigError(
        f"no goal of {list(facts)} facts about {list(parts)} parts has a plan of ≤ {max_chars} characters"
    )


def work(plan: list[Step]) -> int:
    """Part-actions a plan takes: `get a b` is two. The shortest plan also takes the fewest (see plan_for)."""
    return sum(len(step.parts) for step in plan)


def goal_prompt(goal: list[Fact], start: list[Fact]) -> str:
    return f"goal: {render_facts(goal)}\n" + (f"start: {render_facts(start)}\n" if start else "")


def other_part(step: Step, rng: random.Random) -> Step:
    """The step with one of its parts replaced by a part it does not name."""
    parts = list(step.parts)
    k = rng.randrange(len(parts))
    parts[k] = rng.choice([x for x in WORLD.parts if x not in parts])
    return Step(step.action, tuple(parts))


def near_miss_plan(plan: list[Step], rng: random.Random) -> str:
    """A plan with one edit: two steps swapped, one dropped, a part changed, or an action replaced."""
    steps = list(plan)
    i = rng.randrange(len(steps))
    kind = rng.choice(["swap", "drop", "part", "action"])
    if kind == "swap" and len(steps) > 1:
        j = (i + 1) % len(steps)
        steps[i], steps[j] = steps[j], steps[i]
    elif kind == "drop" and len(steps) > 1:
        del steps[i]
    elif kind == "part":
        steps[i] = other_part(steps[i], rng)
    else:
        names = [a for a in ("get", "cut", "paint") if a != steps[i].action]
        action = rng.choice(names) if steps[i].action != "join" else "cut"
        steps[i] = Step(action, steps[i].parts)
    return render_plan(steps)


class GoalShape(TaskConfig):
    parts: tuple[int, int] = Field(
        (2, 3), description="[low, high] parts a goal is about (of a-e), larger likelier; ≤ 3 keeps plans short."
    )
    facts: tuple[int, int] = Field((2, 3), description="[low, high] facts in a goal (cut, painted, joined).")

    _ordered = field_validator("parts", "facts")(ordered_range)


class PlanConfig(GoalShape):
    max_start: int = Field(2, ge=0, le=6, description="Most facts already true at the start (have, cut, painted).")
    max_chars: int = Field(
        40, ge=10, description="Longest reference plan, in characters; goals whose shortest plan is longer are redrawn."
    )
    slack: int = Field(
        0,
        ge=0,
        description="Steps, and part-actions, a plan may take beyond the shortest plan and still pass. 0 by default: "
        "without a bound a constant 'do everything' plan passes many goals (the < 1% thoughtless-baseline rule).",
    )


@TASKS.register("plan")
class PlanTask(Task):
    """Goal (and start) → compact plan; passes when the plan executes (every precondition holds at its step),
    reaches the goal, and takes no more steps or part-actions than the shortest plan (+ slack). Any such plan passes."""

    name = "plan"
    Config = PlanConfig
    config: PlanConfig

    def instance(self, id: int) -> Instance:
        cfg = self.config
        goal, start = sample_goal(self.rng(id), cfg.parts, cfg.facts, cfg.max_start, cfg.max_chars)
        plan = plan_for(goal, start)
        meta = {"goal": goal, "start": start, "optimal": len(plan), "work": work(plan)}
        return Instance(id=id, prompt=goal_prompt(goal, start), reference=render_plan(plan), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        return score_plan(response.strip(), instance.meta, self.config.slack)

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        goal_line = instance.prompt.splitlines()[0].removeprefix("goal: ")
        return {
            "empty": "",
            "echo": instance.prompt,
            "goal as plan": goal_line,
            "constant join": "get a b;cut a b;join a b",
            "constant busy": "get a b c;cut a b c;join a b c;paint a b c",
            "constant paint": "get a b;paint a b",
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """A near miss (steps swapped, one dropped, a part or an action changed) that fails; the fallback drops
        the last step, which always fails: a shorter plan would contradict the reference being the shortest."""
        plan = parse_plan_text(instance.reference)
        return verified_wrong(self, instance, lambda: near_miss_plan(plan, rng), render_plan(plan[:-1]) or "get")


def score_plan(text: str, meta: dict[str, Any], slack: int) -> Score:
    """1 when the plan executes, reaches the goal and takes no more steps and part-actions than the shortest plan
    (+ slack); `details` say whether it is in the grammar, executes, and reaches the goal (`plan_ok`)."""
    details: dict[str, Any] = {"grammar_ok": in_grammar(plan_grammar(), text), "executes": False, "plan_ok": False}
    try:
        plan = parse_plan_text(text)
    except StepError as err:
        return Score(0.0, details | {"reason": str(err)})
    run = WORLD.execute(plan, meta["start"], meta["goal"])
    lean = len(plan) <= meta["optimal"] + slack and work(plan) <= meta["work"] + slack
    reason = run.reason
    if run.ok and not lean:
        reason = f"{len(plan)} steps, {work(plan)} part-actions; the shortest: {meta['optimal']}, {meta['work']}"
    details |= {"executes": run.preconditions_held, "plan_ok": run.ok, "steps": len(plan), "reason": reason}
    return Score(float(run.ok and lean), details)


class StructuredConfig(TaskConfig):
    distractors: int = Field(1, ge=0, le=4, description="Most facts in the state that the step does not need.")


@TASKS.register("structured")
class StructuredTask(Task):
    """State + wanted facts → the one step that makes them true, as `{"action":…,"params":[…]}`; params list the
    parts in the order the wanted facts name them. Passes when the JSON parses to exactly that step."""

    name = "structured"
    Config = StructuredConfig
    config: StructuredConfig

    def instance(self, id: int) -> Instance:
        rng = self.rng(id)
        step = sample_step(rng)
        action = WORLD.actions[step.action]
        want = action.adds(step.parts)
        spare = [f"{p}:{x}" for p in ("have", "cut", "painted") for x in WORLD.parts]
        spare = [f for f in spare if f not in want and f not in action.preconditions(step.parts)]
        state = sorted(action.preconditions(step.parts) + rng.sample(spare, rng.randint(0, self.config.distractors)))
        prompt = f"state: {render_facts(state) or 'none'}\nwant: {render_facts(want)}\n"
        meta = {"state": state, "want": want, "action": step.action, "params": list(step.parts)}
        return Instance(id=id, prompt=prompt, reference=step_json(step), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        text = response.strip()
        step = parse_step_json(text)
        details: dict[str, Any] = {"grammar_ok": in_grammar(action_grammar(), text), "parsed": step is not None}
        composes = step is not None and WORLD.execute([step], instance.meta["state"], instance.meta["want"]).ok
        matches = step == Step(instance.meta["action"], tuple(instance.meta["params"]))
        return Score(float(matches), details | {"executes_to_want": composes})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        return {
            "empty": "",
            "echo": instance.prompt,
            "want line": instance.prompt.splitlines()[1],
            "constant get": step_json(Step("get", ("a",))),
            "constant join": step_json(Step("join", ("a", "b"))),
            "constant cut": step_json(Step("cut", ("a", "b", "c"))),
        }

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """The right JSON with its parts reordered or one replaced, or the action swapped for another."""
        action, parts = instance.meta["action"], list(instance.meta["params"])
        kind = rng.choice(["order", "part", "action"])
        if kind == "order" and len(parts) > 1:
            parts = parts[1:] + parts[:1]
        elif kind == "part" or action == "join":
            parts = list(other_part(Step(action, tuple(parts)), rng).parts)
        else:
            action = rng.choice([a for a in ("get", "cut", "paint") if a != action])
        return step_json(Step(action, tuple(parts)))


def parse_step_json(text: str) -> Step | None:
    """`{"action": str, "params": [str, ...]}` (other keys ignored) as a Step, or None if it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("action"), str):
        return None
    if not isinstance(data.get("params"), list) or not all(isinstance(p, str) for p in data["params"]):
        return None
    return Step(data["action"], tuple(data["params"]))


VERBS = {"get": ("fetch", "take"), "cut": ("slice", "saw"), "paint": ("coat", "dye"), "join": ("glue", "attach")}
"""Words a `grammar` request uses for each action, so the answer must be translated into the grammar."""


class GrammarConfig(TaskConfig):
    max_steps: int = Field(2, ge=1, le=3, description="Most commands asked for in one request.")


@TASKS.register("grammar")
class GrammarTask(Task):
    """A request in other words ("fetch a c then slice c") → the same steps in the shipped plan grammar
    (`get a c;cut c`). Passes when the grammar recognises the answer AND it carries exactly the requested steps;
    `details.grammar_ok` alone is the grammar compliance."""

    name = "grammar"
    Config = GrammarConfig
    config: GrammarConfig
    grammar_file = PLAN_GRAMMAR_FILE

    def instance(self, id: int) -> Instance:
        rng = self.rng(id)
        n = rng.choices(range(1, self.config.max_steps + 1), weights=[3] + [7] * (self.config.max_steps - 1))[0]
        steps = [sample_step(rng) for _ in range(n)]
        request = " then ".join(" ".join((rng.choice(VERBS[s.action]), *s.parts)) for s in steps)
        meta = {"steps": [s.text() for s in steps], "grammar": self.grammar_file.name}
        return Instance(id=id, prompt=f"cmd: {request}\n", reference=render_plan(steps), meta=meta)

    def score(self, instance: Instance, response: str) -> Score:
        text = response.strip()
        grammar_ok = in_grammar(plan_grammar(), text)
        try:
            content_ok = [s.text() for s in parse_plan_text(text)] == instance.meta["steps"]
        except StepError:
            content_ok = False
        return Score(float(grammar_ok and content_ok), {"grammar_ok": grammar_ok, "content_ok": content_ok})

    def baselines(self, instance: Instance, rng: random.Random) -> dict[str, str]:
        request = instance.prompt.removeprefix("cmd: ").strip()
        return {"empty": "", "echo": instance.prompt, "request": request, "constant": "get a", "constant 2": "get a b"}

    def wrong_completion(self, instance: Instance, rng: random.Random) -> str:
        """Outside the grammar (the request's own verbs, or `,` for `;`), or in it with a part changed."""
        steps = parse_plan_text(instance.reference)
        own_verbs = ";".join(" ".join((VERBS[s.action][0], *s.parts)) for s in steps)

        def make() -> str:
            kind = rng.choice(["verbs", "separator", "content"])
            if kind == "verbs":
                return own_verbs
            if kind == "separator" and len(steps) > 1:
                return ",".join(s.text() for s in steps)
            return near_miss_plan(steps, rng) if len(steps) > 1 else render_plan([other_part(steps[0], rng)])

        return verified_wrong(self, instance, make, own_verbs)
