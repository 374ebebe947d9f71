"""Comparing evaluation results task by task with the Affine rule, and the Pareto frontier over models.

Intervals are recomputed from each task's n and sum (never read from the file). The rule favours the model
named first: a later model takes a task only when its 80% lower bound clears the holder's upper bound, so a
challenger must be clearly better, not merely luckier. Because "clearly better" is not transitive, pairwise
dominance can form a cycle (A beats B, B beats C, C beats A) and leave no undominated model; the frontier is then
every model."""

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from trainguard.eval.stats import interval

TIE = "tie"


class Entry(NamedTuple):
    """One model's standing on one task, in command-line order."""

    name: str
    n: int
    lo: float
    hi: float


def check_result(data: Any) -> str | None:
    """Why `data` is not an evaluation result ({"tasks": {NAME: {n, sum, ...}}}), or None when it is one."""
    if not isinstance(data, Mapping):
        return "not a JSON object"
    tasks = data.get("tasks")
    if not isinstance(tasks, Mapping) or not tasks:
        return "no 'tasks' mapping: not a trainguard eval result"
    for task, row in tasks.items():
        missing = [key for key in ("n", "sum") if not isinstance(row, Mapping) or key not in row]
        if missing:
            return f"task {task!r} has no {' or '.join(missing)}: not a trainguard eval result"
        n, total = row["n"], row["sum"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            return f"task {task!r}: n must be a whole number >= 0, got {n!r}"
        if isinstance(total, bool) or not isinstance(total, int | float):
            return f"task {task!r}: sum must be a number, got {total!r}"
    return None


def load_results(paths: Iterable[Path | str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Evaluation results by name (the file stem; `folder/stem` when two files share a stem), and the files
    that were skipped: {path: reason}."""
    results: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    for raw in paths:
        path = Path(raw)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            problems[str(path)] = f"cannot be read ({err.strerror or err})"
            continue
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            problems[str(path)] = f"not JSON ({err})"
            continue
        reason = check_result(data)
        if reason is not None:
            problems[str(path)] = reason
            continue
        name = path.stem if path.stem not in results else f"{path.parent.name}/{path.stem}"
        suffix = 2
        while name in results:
            name, suffix = f"{path.parent.name}/{path.stem}#{suffix}", suffix + 1
        results[name] = data
    return results, problems


def task_winner(entries: Sequence[Entry], min_samples: int = 0) -> str:
    """The Affine rule on one task. Models under `min_samples` lose to any that has enough; the holder starts
    as the earliest eligible model and a later one takes the task when its lower bound > the holder's upper
    bound. "tie" when no model has `min_samples` (for two models: both under)."""
    eligible = [e for e in entries if e.n >= min_samples]
    if not eligible:
        return TIE
    holder = eligible[0]
    for challenger in eligible[1:]:
        if challenger.lo > holder.hi:
            holder = challenger
    return holder.name


def pareto_frontier(names: Sequence[str], dominance: Iterable[Sequence[str]]) -> list[str]:
    """Models that no other dominates, in the given order; every model when that set is empty (a cycle)."""
    dominated = {b for _, b in dominance}
    frontier = [name for name in names if name not in dominated]
    return frontier or list(names)


def compare(results: Mapping[str, Mapping[str, Any]], min_samples: int = 0) -> dict[str, Any]:
    """Per-task winners among all models, pairwise dominance and the Pareto frontier on the tasks every
    result shares. A dominates B when, compared alone (in the results' order), B wins no shared task and A wins
    at least one. Results that are not evaluation results land in "skipped" with the reason; tasks that not
    every result has land in "unshared" per model."""
    tasks_of: dict[str, Mapping[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name, data in results.items():
        reason = check_result(data)
        if reason is None:
            tasks_of[name] = data["tasks"]
        else:
            skipped[name] = reason
    names = list(tasks_of)
    first = next(iter(tasks_of.values()), {})
    shared = [t for t in first if all(t in tasks for tasks in tasks_of.values())]
    unshared = {name: sorted(set(tasks) - set(shared)) for name, tasks in tasks_of.items()}
    samples = {name: {t: int(tasks_of[name][t]["n"]) for t in shared} for name in names}
    intervals = {
        name: {t: interval(samples[name][t], float(tasks_of[name][t]["sum"])) for t in shared} for name in names
    }

    def entries(task: str, among: Sequence[str]) -> list[Entry]:
        return [Entry(m, samples[m][task], *intervals[m][task]) for m in among]

    winners = {t: task_winner(entries(t, names), min_samples) for t in shared}
    dominance: list[list[str]] = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            won = [task_winner(entries(t, (a, b)), min_samples) for t in shared]
            if a in won and b not in won:
                dominance.append([a, b])
            elif b in won and a not in won:
                dominance.append([b, a])
    return {
        "winners": winners,
        "dominance": dominance,
        "frontier": pareto_frontier(names, dominance),
        "intervals": intervals,
        "samples": samples,
        "min_samples": min_samples,
        "shared": shared,
        "unshared": {name: extra for name, extra in unshared.items() if extra},
        "skipped": skipped,
    }
