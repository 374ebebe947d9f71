"""The tables `trainguard eval` and `trainguard compare` print: one screen each, numbers a reader can compare by
eye (percentages for shares, three decimals for means and interval bounds)."""

from collections.abc import Mapping, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from trainguard.eval.stats import interval

NONE = "—"


def eval_table(result: Mapping[str, Any], baseline: Mapping[str, Any] | None = None) -> Table:
    """Per task n, accuracy, mean, ci80 and success rate, then the sample-weighted aggregate. With a
    `baseline` result, a Δ row under each task both have: the change of each column, and in the ci80 column
    where the new interval lies against the old one (above: its lower bound over the old upper; below; overlaps).
    A row each rather than a column each, so the table still fits 80 columns; so are a task's own metrics
    (means of its verifier's numeric details), one dim row each under the task."""
    table = Table(title=f"trainguard eval {escape(str(result.get('model', '')))}".rstrip(), title_justify="left")
    table.add_column("task", no_wrap=True)
    for col in ("n", "accuracy", "mean", "ci80", "success"):
        table.add_column(col, justify="right", no_wrap=True)
    old_tasks: Mapping[str, Any] = baseline.get("tasks", {}) if baseline is not None else {}
    tasks: Mapping[str, Any] = result["tasks"]
    same_tasks = set(old_tasks) == set(tasks)
    old_aggregate = baseline.get("aggregate") if baseline is not None and same_tasks else None
    rows = [(escape(name), row, old_tasks.get(name), None) for name, row in tasks.items()]
    for label, row, old, style in [*rows, ("all", result["aggregate"], old_aggregate, "bold")]:
        table.add_row(label, *_cells(row), style=style)
        for key, value in row.get("metrics", {}).items():  # the task's own metrics, as means over its samples
            table.add_row(f"  {escape(key)}", "", "", f"{value:.3f}", "", "", style="dim")
        if old is not None and "n" in old and "sum" in old:
            table.add_row("  Δ", *_deltas(row, old), style="dim")
    notes = ["accuracy: share of scores > 0.5; success: share > 0; ci80: Jeffreys 80% interval of the mean score"]
    if baseline is not None:
        notes.append("Δ: change against the baseline; its ci80: the new interval above, below or overlapping the old")
        only_new, only_old = sorted(set(tasks) - set(old_tasks)), sorted(set(old_tasks) - set(tasks))
        if only_new:
            notes.append(f"not in the baseline: {', '.join(only_new)}")
        if only_old:
            notes.append(f"only in the baseline: {', '.join(only_old)}")
        if not same_tasks:
            notes.append("the aggregate is not compared: the task sets differ")
    table.caption = escape("\n".join(notes))
    return table


def _cells(row: Mapping[str, Any]) -> list[str]:
    lo, hi = row["ci80"]
    shares = f"{row['accuracy']:.1%}", f"{row['mean']:.3f}", f"[{lo:.3f}, {hi:.3f}]", f"{row['success_rate']:.1%}"
    return [str(row["n"]), *shares]


def _deltas(row: Mapping[str, Any], old: Mapping[str, Any]) -> list[str]:
    """n, accuracy, mean, ci80 (where the intervals lie) and success rate against the baseline's row."""
    lo, hi = row["ci80"]
    old_n, old_sum = int(old["n"]), float(old["sum"])
    old_lo, old_hi = interval(old_n, old_sum)  # recomputed from n and sum, as compare does
    where = "above" if lo > old_hi else "below" if hi < old_lo else "overlaps"
    return [
        f"{row['n'] - old_n:+d}",
        _points(row["accuracy"], old.get("accuracy")),
        f"{row['mean'] - old_sum / old_n:+.3f}" if old_n else NONE,
        where,
        _points(row["success_rate"], old.get("success_rate")),
    ]


def _points(new: float, old: float | None) -> str:
    """A change of a share in percentage points."""
    return NONE if old is None else f"{(new - old) * 100:+.1f}pp"


def compare_table(comparison: Mapping[str, Any]) -> Table:
    """One row per shared task: each model's ci80 and n (a * marks fewer than min_samples), and the winner;
    the caption gives the dominance pairs and the Pareto frontier."""
    intervals: Mapping[str, Mapping[str, list[float]]] = comparison["intervals"]
    samples: Mapping[str, Mapping[str, int]] = comparison.get("samples", {})
    min_samples = int(comparison.get("min_samples", 0))
    names = list(intervals)
    table = Table(title="trainguard compare", title_justify="left")
    table.add_column("task", no_wrap=True)
    for name in names:
        table.add_column(escape(name), justify="right", no_wrap=True)
    table.add_column("winner", no_wrap=True)
    for task, winner in comparison["winners"].items():
        cells = []
        for name in names:
            lo, hi = intervals[name][task]
            n = samples.get(name, {}).get(task)
            mark = "*" if n is not None and n < min_samples else ""
            cells.append(f"[{lo:.3f}, {hi:.3f}] n={n}{mark}" if n is not None else f"[{lo:.3f}, {hi:.3f}]")
        table.add_row(escape(task), *map(escape, cells), escape(winner), style="bold" if winner != "tie" else None)
    dominance = ", ".join(f"{a} > {b}" for a, b in comparison["dominance"]) or "none"
    notes = [
        "ci80: Jeffreys 80% interval from n and sum; a later model takes a task when its lower bound is above the "
        "holder's upper bound",
        f"dominance: {dominance}",
        f"frontier: {', '.join(comparison['frontier'])}",
    ]
    if min_samples:
        notes.append(f"* fewer than {min_samples} samples: loses the task (all under: tie)")
    table.caption = escape("\n".join(notes))
    return table


def skills_table(points: Sequence[Mapping[str, Any]]) -> Table:
    """eval/skills.json as one table: a row per task (mean score) and per task metric, a column per point
    measured (before training, then after each stage), so a curriculum's skills read left to right."""
    table = Table(
        title="skills by stage", title_justify="left", caption="held-out mean score; a task's metrics below it"
    )
    table.add_column("task", no_wrap=True)
    for point in points:
        table.add_column(escape(str(point["when"])), justify="right", no_wrap=True)
    tasks = list(dict.fromkeys(task for point in points for task in point["tasks"]))
    for task in tasks:
        keys = list(dict.fromkeys(["mean", *(k for point in points for k in point["tasks"].get(task, {}))]))
        for key in keys:
            cells = [point["tasks"].get(task, {}).get(key) for point in points]
            label, style = (escape(task), None) if key == "mean" else (f"  {escape(key)}", "dim")
            table.add_row(label, *(NONE if v is None else f"{v:.3f}" for v in cells), style=style)
    return table
