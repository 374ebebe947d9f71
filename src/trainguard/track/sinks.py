"""Metric sinks: `log`, `flush` (make durable, before a checkpoint), `forget_after` (a rollback's steps are
gone: the store deletes them, TensorBoard purges them) and `close`, fanned out by one container."""

import csv
import io
import time
from pathlib import Path
from typing import Any, Protocol

from trainguard.atomic import atomic_write_text
from trainguard.track.store import MetricStore, read_metrics


class Sink(Protocol):
    def log(self, metrics: dict[str, float], step: int, stage: str) -> None: ...

    def flush(self) -> None: ...

    def forget_after(self, step: int) -> int: ...

    def close(self) -> None: ...


class StoreSink:
    """Commits at most once per `commit_every_s` so a live monitor sees fresh rows at little cost."""

    def __init__(self, store: MetricStore, commit_every_s: float = 1.0) -> None:
        self.store = store
        self.commit_every_s = commit_every_s
        self._last_commit = time.monotonic()

    def log(self, metrics: dict[str, float], step: int, stage: str) -> None:
        self.store.log(metrics, step, stage)
        if time.monotonic() - self._last_commit >= self.commit_every_s:
            self.flush()

    def flush(self) -> None:
        self.store.commit()
        self._last_commit = time.monotonic()

    def forget_after(self, step: int) -> int:
        return self.store.truncate_after(step)

    def close(self) -> None:
        self.flush()


class TensorBoardSink:
    """Mirror to tb/; `purge_step` drops events a resumed run is about to write again."""

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self.log_dir = log_dir
        self.writer = self._open(purge_step)

    def _open(self, purge_step: int | None) -> "Any":
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.log_dir), purge_step=purge_step)

    def log(self, metrics: dict[str, float], step: int, stage: str) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def forget_after(self, step: int) -> int:
        """Reopen with `purge_step`: TensorBoard drops every event after `step` at the next write."""
        self.writer.close()
        self.writer = self._open(step + 1)
        return 0

    def close(self) -> None:
        self.writer.close()


class Sinks:
    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def log(self, metrics: dict[str, float], step: int, stage: str) -> None:
        for sink in self.sinks:
            sink.log(metrics, step, stage)

    def flush(self) -> None:
        for sink in self.sinks:
            sink.flush()

    def forget_after(self, step: int) -> int:
        """Drop every row after `step` (a rollback); returns the store's rows dropped."""
        return sum(sink.forget_after(step) for sink in self.sinks)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def export_csv(db_path: Path, out: Path) -> int:
    """Write every metric as one wide CSV row per (stage, step); returns the number of rows."""
    rows: dict[tuple[str, int], dict[str, float]] = {}
    times: dict[tuple[str, int], float] = {}
    keys: list[str] = []
    for step, stage, key, value, t in read_metrics(db_path):
        rows.setdefault((stage, step), {})[key] = value
        times[(stage, step)] = t
        if key not in keys:
            keys.append(key)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["stage", "step", "time", *keys])
    for (stage, step), values in rows.items():
        writer.writerow([stage, step, f"{times[(stage, step)]:.3f}", *(values.get(k, "") for k in keys)])
    atomic_write_text(Path(out), buf.getvalue())
    return len(rows)
