"""BuilderBrain's three data forms: loaders that count and report bad rows, offline generators (from the tasks in
tasks/builder.py), and converters to `{prompt, completion}` SFT records a run trains on.

- structured (JSONL): `{input, structured_output: {action, params, plan}}`; `plan` (optional) is the steps from
  nothing to the action, ending with it.
- grammar (JSONL): `{text, grammar, valid_outputs, invalid_outputs}`; `grammar` names a `.cfg` file (our format,
  constraints/library/grammar.py) or a `.lark` file in the simple subset constraints/library/lark_subset.py
  translates (lark is not a dependency; other lark features fail naming the line and the subset), beside the
  data file or shipped in tasks/grammars/.
- plans (YAML): a list (or `{plans: [...]}`) of `{goal, start, nodes: [{id, action, preconditions}],
  edges: [{from, to, type}]}`; the steps run in an order the edges allow and must reach the goal.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trainguard.atomic import atomic_write_text
from trainguard.constraints.library.grammar import Grammar, GrammarError, recognises
from trainguard.constraints.library.lark_subset import load_grammar_file
from trainguard.constraints.library.plan import PlanError
from trainguard.errors import ConfigError, DataError
from trainguard.rows import ReadReport, read_rows
from trainguard.tasks import build_task
from trainguard.tasks.builder import GRAMMARS, VERBS, goal_prompt, step_json
from trainguard.tasks.world import (
    WORLD,
    Step,
    StepError,
    check_facts,
    graph_to_plan,
    parse_plan_text,
    plan_for,
    plan_to_graph,
    render_plan,
)

Row = dict[str, Any]


@dataclass
class FormReport(ReadReport):
    """The project's bad-row report, plus the reason for every bad row by its line in the file."""

    bad_rows: dict[int, str] = field(default_factory=dict)

    def reject(self, reason: str, line: int) -> None:
        super().reject(reason, line)
        self.bad_rows[line] = reason


# -- reading ----------------------------------------------------------------------------------------------------
def read_jsonl_form(path: Path | str, check: Callable[[Any], str | None]) -> tuple[list[Row], FormReport]:
    """Rows of a JSONL file that `check` passes; a bad row is counted with its reason, never fatal. DataError
    when the file is missing or no row is usable."""
    return read_rows(Path(path), check, FormReport)


def finish(report: FormReport, rows: list[Row]) -> FormReport:
    report.usable = len(rows)
    if not rows:
        detail = report.summary() if report.rows else f"{report.source}: the file has no rows"
        raise DataError(f"no usable rows: {detail}")
    return report


def check_step(action: Any, params: Any) -> Step:
    """A Step from a structured output's action and params; StepError says what is wrong."""
    if not isinstance(action, str) or not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise StepError("structured_output needs 'action' (text) and 'params' (a list of part names)")
    step = Step(action, tuple(params))
    WORLD.check_step(step)
    return step


def structured_problem(row: Any) -> str | None:
    """Why a structured row is unusable, or None."""
    if not isinstance(row, dict) or not isinstance(row.get("input"), str) or not row["input"].strip():
        return "missing or empty 'input'"
    out = row.get("structured_output")
    if not isinstance(out, dict):
        return "'structured_output' is not an object"
    try:
        step = check_step(out.get("action"), out.get("params"))
        if "plan" in out:
            if not isinstance(out["plan"], list) or not all(isinstance(s, str) for s in out["plan"]):
                return "'plan' is not a list of steps"
            plan = parse_plan_text(";".join(out["plan"]))
            run = WORLD.execute(plan)
            if not run.preconditions_held:
                return f"plan does not execute: {run.reason}"
            if plan[-1] != step:
                return f"plan ends with '{plan[-1].text()}', not the action '{step.text()}'"
    except StepError as err:
        return str(err)
    return None


def load_structured(path: Path | str) -> tuple[list[Row], FormReport]:
    """Structured examples of a JSONL file and the report of bad rows."""
    return read_jsonl_form(path, structured_problem)


def resolve_grammar(name: str, folder: Path) -> Path:
    """A grammar named by a row: beside the data file first, then the grammars shipped with trainguard."""
    for candidate in (folder / name, GRAMMARS / name):
        if candidate.is_file():
            return candidate
    raise GrammarError(f"grammar file {name!r} not found beside the data or in {GRAMMARS}")


def grammar_checker(folder: Path) -> Callable[[Any], str | None]:
    """The row check for grammar examples, parsing each grammar file once."""
    grammars: dict[str, Grammar | str] = {}

    def problem(row: Any) -> str | None:
        if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
            return "missing or empty 'text'"
        name = row.get("grammar")
        if not isinstance(name, str) or not name.endswith((".cfg", ".lark")):
            return "'grammar' is not a .cfg or .lark file name"
        if name not in grammars:
            try:
                grammars[name] = load_grammar_file(resolve_grammar(name, folder))
            except GrammarError as err:
                grammars[name] = str(err)
        grammar = grammars[name]
        if isinstance(grammar, str):
            return grammar
        valid, invalid = row.get("valid_outputs"), row.get("invalid_outputs", [])
        if not isinstance(valid, list) or not valid or not all(isinstance(v, str) for v in valid):
            return "'valid_outputs' is not a non-empty list of text"
        if not isinstance(invalid, list) or not all(isinstance(v, str) for v in invalid):
            return "'invalid_outputs' is not a list of text"
        for i, text in enumerate(valid):
            if not recognises(grammar, text):
                return f"valid_outputs[{i}] is not in {name}"
        for i, text in enumerate(invalid):
            if recognises(grammar, text):
                return f"invalid_outputs[{i}] is in {name}"
        return None

    return problem


def load_grammar_examples(path: Path | str) -> tuple[list[Row], FormReport]:
    """Grammar examples of a JSONL file whose outputs agree with their grammar, and the report of the rest."""
    return read_jsonl_form(path, grammar_checker(Path(path).parent))


def plan_problem(item: Any) -> str | None:
    """Why a plan example is unusable, or None: its goal and start are facts, its graph is a plan of steps
    whose preconditions hold in order, and it reaches the goal."""
    if not isinstance(item, dict):
        return "not a mapping"
    goal, start = item.get("goal"), item.get("start", [])
    if not isinstance(goal, list) or not goal or not isinstance(start, list):
        return "'goal' (a non-empty list of facts) or 'start' (a list) is missing"
    try:
        check_facts([*goal, *start])
        run = WORLD.execute(graph_to_plan(item), start, goal)
    except (PlanError, StepError) as err:
        return str(err)
    return None if run.ok else f"plan fails: {run.reason}"


def load_plans(path: Path | str) -> tuple[list[Row], FormReport]:
    """Plan examples of a YAML file and the report of bad ones (by the line each item starts on)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
        data, node = yaml.safe_load(text), yaml.compose(text)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not YAML ({err})") from None
    if isinstance(data, dict) and isinstance(data.get("plans"), list) and node is not None:
        data, node = data["plans"], next(v for k, v in node.value if k.value == "plans")
    if not isinstance(data, list) or node is None:
        raise DataError(f"{path}: expected a list of plans, or a mapping with a 'plans' list")
    report, rows = FormReport(str(path), rows=len(data)), []
    for item, item_node in zip(data, node.value, strict=True):
        reason = plan_problem(item)
        if reason:
            report.reject(reason, item_node.start_mark.line + 1)
        else:
            rows.append(item)
    return rows, finish(report, rows)


# -- generating -------------------------------------------------------------------------------------------------
def first_id(seed: int) -> int:
    """Seed s uses ids from s * 10^7 on, below the held-out ids (10^9, eval.accuracy.HELDOUT_START)."""
    if not 0 <= seed < 100:
        raise ConfigError(f"seed {seed}: use 0 <= seed < 100 (each seed owns its own block of task ids)")
    return seed * 10**7


def generate_structured(n: int, seed: int = 0, path: Path | str | None = None) -> list[Row]:
    """n structured examples from the `structured` task; written as JSONL when `path` is given."""
    task, rows = build_task("structured"), []
    for id in range(first_id(seed), first_id(seed) + n):
        inst = task.instance(id)
        step = Step(inst.meta["action"], tuple(inst.meta["params"]))
        action = WORLD.actions[step.action]
        plan = [*plan_for(action.preconditions(step.parts)), step]
        out = {"action": step.action, "params": list(step.parts), "plan": [s.text() for s in plan]}
        rows.append({"id": f"structured-{id}", "input": inst.prompt, "structured_output": out})
    return write_rows(path, rows)


def generate_grammar_examples(n: int, seed: int = 0, path: Path | str | None = None) -> list[Row]:
    """n grammar examples from the `grammar` task: the reference (and its spaced form) as valid outputs; the
    request's own verbs, `,` between steps and capitals as invalid ones."""
    task, rows = build_task("grammar"), []
    for id in range(first_id(seed), first_id(seed) + n):
        inst = task.instance(id)
        steps = parse_plan_text(inst.reference)
        valid = list(dict.fromkeys([inst.reference, "; ".join(s.text() for s in steps)]))
        invalid = [";".join(" ".join((VERBS[s.action][0], *s.parts)) for s in steps), inst.reference.capitalize()]
        if len(steps) > 1:
            invalid.append(",".join(s.text() for s in steps))
        row = {"id": f"grammar-{id}", "text": inst.prompt, "grammar": inst.meta["grammar"]}
        rows.append(row | {"valid_outputs": valid, "invalid_outputs": invalid})
    return write_rows(path, rows)


def generate_plans(n: int, seed: int = 0, path: Path | str | None = None) -> list[Row]:
    """n plan examples from the `plan` task as graphs; written as YAML when `path` is given."""
    task, rows = build_task("plan"), []
    for id in range(first_id(seed), first_id(seed) + n):
        inst = task.instance(id)
        graph = plan_to_graph(parse_plan_text(inst.reference))
        rows.append({"id": f"plan-{id}", "goal": inst.meta["goal"], "start": inst.meta["start"], **graph})
    return write_rows(path, rows)


def write_rows(path: Path | str | None, rows: list[Row]) -> list[Row]:
    """Rows to `path` atomically: YAML (`plans:` list) for .yaml/.yml, else JSONL; nothing when path is None."""
    if path is not None:
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            text = yaml.safe_dump({"plans": rows}, sort_keys=False, default_flow_style=None, width=120)
        else:
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        atomic_write_text(path, text)
    return rows


# -- converting to SFT records ----------------------------------------------------------------------------------
def structured_to_sft(rows: list[Row]) -> list[Row]:
    """`{prompt: input, completion: {"action":…,"params":[…]}}` in the compact JSON the `structured` task scores."""
    out = []
    for row in rows:
        step = check_step(row["structured_output"]["action"], row["structured_output"]["params"])
        out.append({"prompt": row["input"], "completion": step_json(step)})
    return out


def grammar_to_sft(rows: list[Row]) -> list[Row]:
    """`{prompt: text, completion: the first valid output}`."""
    return [{"prompt": row["text"], "completion": row["valid_outputs"][0]} for row in rows]


def grammar_to_pairs(rows: list[Row]) -> list[Row]:
    """Preference pairs: the first valid output over each invalid one (rows without invalid outputs give none)."""
    return [
        {"prompt": row["text"], "response_chosen": row["valid_outputs"][0], "response_rejected": bad}
        for row in rows
        for bad in row.get("invalid_outputs", [])
    ]


def plans_to_sft(rows: list[Row]) -> list[Row]:
    """`{prompt: the plan task's goal prompt, completion: the graph's steps in compact form}`."""
    return [
        {"prompt": goal_prompt(row["goal"], row.get("start", [])), "completion": render_plan(graph_to_plan(row))}
        for row in rows
    ]


FORMS: dict[str, tuple[Callable[[Path], tuple[list[Row], FormReport]], Callable[[list[Row]], list[Row]]]] = {
    "structured": (load_structured, structured_to_sft),
    "grammar": (load_grammar_examples, grammar_to_sft),
    "plans": (load_plans, plans_to_sft),
}


def form_to_sft(path: Path | str, form: str, out: Path | str | None = None) -> tuple[list[Row], FormReport]:
    """Load a file in one of the three forms and convert it to SFT records (written as JSONL to `out`, which a
    run's data source `{path: ...}` then reads)."""
    if form not in FORMS:
        raise ConfigError(f"unknown data form {form!r}; allowed: {', '.join(FORMS)}")
    load, convert = FORMS[form]
    rows, report = load(Path(path))
    records = convert(rows)
    write_rows(out, records)
    return records, report
