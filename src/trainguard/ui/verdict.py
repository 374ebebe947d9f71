"""Verdicts for the console: a gate's (the decision, each check's interval, the reasons for a rejection) and
BuilderBrain's scorecard with its deployment verdict."""

from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from trainguard.guard.gates import Verdict


def verdict_lines(verdict: Verdict, path: Path | None = None) -> list[str]:
    word = "[green]approved[/]" if verdict.approved else "[red]rejected[/]"
    where = f" ({escape(str(path))})" if path is not None else ""
    lines = [f"{verdict.kind} gate: {word}{where}"]
    for name, s in verdict.metrics.items():
        lo, hi = s["ci80"]
        lines.append(f"  {escape(name)}: mean {s['mean']:.3f}, 80% interval [{lo:.3f}, {hi:.3f}], n = {s['n']}")
    lines += [f"  [red]✗[/] {escape(reason)}" for reason in verdict.reasons]
    return lines


def scorecard_table(card: dict[str, Any], verdict: dict[str, Any]) -> Table:
    """The scorecard's parts with n and the 80% interval; the caption is validate_for_deployment's status."""
    status = "[green]approved[/]" if verdict["approved"] else f"[red]{verdict['status']}[/]"
    failing = "".join(f"\n✗ {escape(line)}" for line in verdict["failing"])
    table = Table(title="BuilderBrain scorecard", caption=f"deployment: {status}{failing}", caption_justify="left")
    for column in ("part", "n", "rate", "ci80"):
        table.add_column(column, justify="left" if column == "part" else "right")
    for name, part in card["parts"].items():
        lo, hi = part["ci80"]
        label = f"{name} (lower is better)" if part["lower_is_better"] else name
        table.add_row(label, str(part["n"]), f"{part['rate']:.2%}", f"[{lo:.4f}, {hi:.4f}]")
    return table
