"""The run's SQLite store (WAL): metrics and events; the monitor, exports and tests read it."""

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics (step INTEGER NOT NULL, stage TEXT NOT NULL, key TEXT NOT NULL,
                                    value REAL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS metrics_step ON metrics (step);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER, stage TEXT,
                                   kind TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
                                   data TEXT, time REAL NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER, stage TEXT,
                                   kind TEXT NOT NULL, severity TEXT NOT NULL, value REAL, threshold REAL,
                                   recommendation TEXT, data TEXT, time REAL NOT NULL);
"""


class MetricStore:
    """Append-only metrics and events; `truncate_after` forgets steps that a resume will redo."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, cheap per step
        self.db.executescript(SCHEMA)
        self.db.commit()

    def log(self, metrics: dict[str, float], step: int, stage: str) -> None:
        now = time.time()
        self.db.executemany(
            "INSERT INTO metrics (step, stage, key, value, time) VALUES (?, ?, ?, ?, ?)",
            [(step, stage, k, float(v), now) for k, v in metrics.items()],
        )

    def event(
        self,
        kind: str,
        message: str,
        step: int | None,
        stage: str | None,
        severity: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO events (step, stage, kind, severity, message, data, time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (step, stage, kind, severity, message, json.dumps(data or {}), time.time()),
        )
        self.db.commit()

    def alert(self, alert: dict[str, Any], stage: str | None) -> None:
        self.db.execute(
            "INSERT INTO alerts (step, stage, kind, severity, value, threshold, recommendation, data, time) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                alert["step"],
                stage,
                alert["kind"],
                alert["severity"],
                _real(alert["value"]),
                _real(alert["threshold"]),
                alert["recommendation"],
                json.dumps(alert.get("data", {})),
                time.time(),
            ),
        )

    def commit(self) -> None:
        self.db.commit()

    def has_event(self, kind: str) -> bool:
        return self.db.execute("SELECT 1 FROM events WHERE kind = ? LIMIT 1", (kind,)).fetchone() is not None

    def truncate_after(self, step: int) -> int:
        """Delete metrics of steps after `step`; returns how many rows went."""
        cur = self.db.execute("DELETE FROM metrics WHERE step > ?", (step,))
        self.db.commit()
        return cur.rowcount

    def close(self) -> None:
        self.db.commit()
        self.db.close()


def read_metrics(path: Path) -> list[tuple[int, str, str, float, float]]:
    """(step, stage, key, value, time) rows in logging order, from a store that may be open elsewhere."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return db.execute("SELECT step, stage, key, value, time FROM metrics ORDER BY rowid").fetchall()
    finally:
        db.close()


def read_table(path: Path, table: str) -> list[dict[str, Any]]:
    """All rows of `events` or `alerts`, oldest first."""
    assert table in ("events", "alerts")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY id")]
    finally:
        db.close()


def _real(x: float) -> float | None:
    """SQLite stores NaN as NULL anyway; say so explicitly, and keep infinities."""
    return None if x != x else float(x)
