"""A gate's verdict as console lines: the decision, each check's interval, and the reasons for a rejection."""

from pathlib import Path

from rich.markup import escape

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
