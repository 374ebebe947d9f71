"""The guard's report: every alert and action of the run, written when a policy stops it."""

import time
from collections import Counter

from trainguard.atomic import atomic_write_json
from trainguard.rundir import RunDir
from trainguard.track.store import read_table


def write_guard_report(run: RunDir, reason: str) -> None:
    assert run.store is not None
    run.store.commit()
    db = run.path / "metrics.db"
    alerts, events = read_table(db, "alerts"), read_table(db, "events")
    actions = [e for e in events if e["kind"] == "action"]
    atomic_write_json(
        run.path / "guard_report.json",
        {
            "stopped": time.time(),
            "reason": reason,
            "alerts_by_kind": dict(Counter(a["kind"] for a in alerts)),
            "alerts": alerts[-50:],
            "actions": actions,
        },
    )
