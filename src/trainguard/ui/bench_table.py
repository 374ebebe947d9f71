"""The fault benchmark's one-screen table."""

from typing import Any

from rich.table import Table


def bench_table(result: dict[str, Any]) -> Table:
    s = result["summary"]
    table = Table(title="guard vs injected faults", title_justify="left")
    for col in ("fault", "scenarios", "recall", "median latency", "recovered"):
        table.add_column(col, justify="left" if col == "fault" else "right")
    for kind, k in s["by_fault"].items():
        n = sum(1 for r in result["scenarios"] if r["fault"] == kind)
        lat = "-" if k["median_latency"] is None else f"{k['median_latency']:g} steps"
        table.add_row(kind, str(n), f"{k['recall']:.0%}", lat, f"{k['recovered']:.0%}")
    table.caption = (
        f"all: recall {s['recall']:.0%}, recovered {s['recovered']:.0%}; clean runs: {result['clean_runs']}, "
        f"alerts above info {result['clean_alerts_above_info']}"
    )
    return table
