"""`trainguard monitor`: a live terminal view of a run folder, read from its metrics.db (WAL: readers never
block the trainer), plus a PNG plot of loss, grad norm and LR with alert markers."""

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Group
from rich.panel import Panel
from rich.table import Table

from trainguard.track.store import read_metrics, read_table

BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float], width: int = 60) -> str:
    vals = [v for v in values[-width:] if math.isfinite(v)]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(BLOCKS[min(int((v - lo) / span * (len(BLOCKS) - 1) + 0.5), len(BLOCKS) - 1)] for v in vals)


@dataclass
class Snapshot:
    status: str
    stage: str | None
    step: int
    total_steps: int
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def last(self, key: str) -> float | None:
        s = self.series.get(key)
        return s[-1][1] if s else None

    @property
    def eta_s(self) -> float | None:
        times = [v for _, v in self.series.get("perf/step_time_s", [])[-50:]]
        if not times or self.status != "running":
            return None
        return (self.total_steps - self.step) * sum(times) / len(times)


def read_snapshot(run_dir: Path) -> Snapshot:
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    db = run_dir / "metrics.db"
    series: dict[str, list[tuple[int, float]]] = {}
    stage, step = None, 0
    for s, st, key, value, _ in read_metrics(db):
        series.setdefault(key, []).append((s, value if value is not None else math.nan))
        if key == "loss/train" or key == "guard/skipped":
            stage, step = st, max(step, s)
    for values in series.values():
        values.sort(key=lambda x: x[0])
    total = sum(int(s.get("max_steps") or 0) for s in config["stages"])
    events = read_table(db, "events")
    return Snapshot(
        manifest.get("status", "?"),
        stage,
        step,
        total,
        series,
        read_table(db, "alerts")[-8:],
        [e for e in events if e["kind"] == "action"][-8:],
    )


def render(snap: Snapshot, run_dir: Path) -> Group:
    eta = f"  ETA {snap.eta_s:,.0f}s" if snap.eta_s is not None else ""
    where = f"stage {snap.stage}  step {snap.step}/{snap.total_steps or '?'}{eta}"
    head = f"[bold]{Path(run_dir).name}[/]  status {snap.status}  {where}"
    lines = Table.grid(padding=(0, 2))
    lines.add_column(style="bold")
    lines.add_column()
    lines.add_column(justify="right")
    for key, label in (("loss/train", "loss"), ("grad/norm", "grad norm"), ("opt/lr", "lr")):
        values = [v for _, v in snap.series.get(key, [])]
        last = snap.last(key)
        lines.add_row(label, sparkline(values), "" if last is None else f"{last:.4g}")
    keys = Table.grid(padding=(0, 2))
    for key in ("loss/eval", "loss/eval_ppl", "weights/update_ratio", "perf/tokens_per_s", "data/epoch"):
        value = snap.last(key)
        if value is not None:
            keys.add_row(key, f"{value:.4g}")
    alerts = Table("step", "kind", "severity", "value", "threshold", title="latest alerts", title_justify="left")
    for a in snap.alerts:
        color = {"critical": "red", "warning": "yellow"}.get(a["severity"], "dim")
        alerts.add_row(
            str(a["step"]),
            a["kind"],
            f"[{color}]{a['severity']}[/]",
            f"{a['value'] or 0:.4g}",
            f"{a['threshold'] or 0:.4g}",
        )
    actions = Table("step", "action", title="latest actions", title_justify="left")
    for e in snap.actions:
        actions.add_row(str(e["step"]), e["message"])
    return Group(Panel(Group(head, lines, keys)), alerts, actions)


def watch(run_dir: Path, console: Any, interval: float = 2.0, once: bool = False) -> None:
    """Redraw until the run stops running (or forever with a finished run never: it prints once)."""
    from rich.live import Live

    if once:
        console.print(render(read_snapshot(run_dir), run_dir))
        return
    if not console.is_terminal:  # a pipe or a log file cannot be redrawn: append a snapshot when the step moves
        shown = None
        while True:
            snap = read_snapshot(run_dir)
            if (snap.stage, snap.step) != shown:
                console.print(render(snap, run_dir))
                shown = (snap.stage, snap.step)
            if snap.status != "running":
                return
            time.sleep(interval)
    with Live(render(read_snapshot(run_dir), run_dir), console=console, refresh_per_second=4) as live:
        while True:
            snap = read_snapshot(run_dir)
            live.update(render(snap, run_dir))
            if snap.status != "running":
                return
            time.sleep(interval)


def plot(run_dir: Path, out: Path) -> None:
    """Loss (train and eval), grad norm and LR against step, with a line at every alert above info; an RL run
    adds its reward (and held-out accuracy), a constrained one each constraint's value, target and λ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snap = read_snapshot(run_dir)
    alerts = read_table(Path(run_dir) / "metrics.db", "alerts")
    panels: list[tuple[tuple[str, str], ...]] = [
        (("loss/train", "train"), ("loss/eval", "eval")),
        (("grad/norm", "grad norm"),),
        (("opt/lr", "lr"),),
    ]
    if "rollout/reward_mean" in snap.series:
        panels.append((("rollout/reward_mean", "reward"), ("eval/accuracy", "held-out accuracy")))
    for name in sorted({k.split("/")[1] for k in snap.series if k.startswith("constraint/") and k.endswith("/lambda")}):
        keys = ("value", "target", "lambda")
        panels.append(tuple((f"constraint/{name}/{k}", f"{name} {k}") for k in keys))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.7 * len(panels)), sharex=True)
    for ax, keys in zip(axes, panels, strict=True):
        for key, label in keys:
            pts = snap.series.get(key, [])
            if pts:
                marker = "o" if key in ("loss/eval", "eval/accuracy") else None
                ax.plot([s for s, _ in pts], [v for _, v in pts], label=label, marker=marker)
        ax.legend(loc="upper right")
        for a in alerts:
            if a["severity"] != "info" and a["step"]:
                ax.axvline(a["step"], color="red" if a["severity"] == "critical" else "orange", alpha=0.5, lw=1)
    axes[1].set_yscale("log")
    axes[-1].set_xlabel("step")
    axes[0].set_title(f"{run_dir} (red/orange lines: critical/warning alerts)")
    fig.tight_layout()
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)
