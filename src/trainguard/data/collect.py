"""Turn verifiable tasks into training data: SFT records from verified references, or preference pairs.

Every reference is scored by its own task (through the sandbox for program tasks) before it is written, and
every rejected answer is verified wrong. The output is appended line by line, so a killed collection resumes:
ids already in the file are skipped and a torn last line is cut off.
"""

import itertools
import json
import os
import random
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainguard.tasks import Task

SEED_STRIDE = 10_000_000  # instance ids of seed s start at s * SEED_STRIDE; held-out eval ids start at 1e9
WRONG_TRIES = 8


@dataclass
class CollectReport:
    out: str
    written: int = 0
    resumed: int = 0  # rows already in the file
    duplicates: int = 0
    bad: Counter = field(default_factory=Counter)  # reason -> count
    torn_tail: bool = False

    def summary(self) -> str:
        parts = [f"{self.written} written to {self.out}", f"{self.resumed} already there"]
        parts.append(f"{self.duplicates} duplicate prompts skipped")
        if self.bad:
            parts.append("bad: " + ", ".join(f"{n} {reason}" for reason, n in self.bad.most_common()))
        if self.torn_tail:
            parts.append("a torn last line was cut off")
        return "; ".join(parts)


def plan(tasks: list[Task], n: int, seed: int) -> list[tuple[Task, int]]:
    """`n` (task, instance id) pairs, tasks interleaved round-robin."""
    return [(tasks[i % len(tasks)], seed * SEED_STRIDE + i // len(tasks)) for i in range(n)]


def existing_rows(path: Path, report: CollectReport) -> tuple[set[str], set[str]]:
    """Ids and prompts already written; cuts a torn (unterminated) last line so appending stays valid."""
    ids: set[str] = set()
    prompts: set[str] = set()
    if not path.exists():
        return ids, prompts
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        report.torn_tail = True
        data = data[: data.rfind(b"\n") + 1]
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            row = json.loads(line)
            ids.add(str(row["id"]))
            prompts.add(row["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError):
            report.bad["unreadable row already in the file"] += 1
    report.resumed = len(ids)
    return ids, prompts


def make_row(task: Task, id: int, pairs: bool) -> dict[str, Any] | str:
    """The row for one instance, or the reason there is none."""
    inst = task.instance(id)
    if not inst.reference:
        return "no reference answer"
    if task.score(inst, inst.reference).value != 1.0:
        return "reference failed verification"
    row: dict[str, Any] = {"id": f"{task.name}-{id}", "task": task.name, "prompt": inst.prompt}
    if not pairs:
        return row | {"completion": inst.reference}
    rng = random.Random(f"wrong:{task.name}:{id}")
    for _ in range(WRONG_TRIES):
        wrong = task.wrong_completion(inst, rng)
        if task.score(inst, wrong).value == 0.0:
            return row | {"response_chosen": inst.reference, "response_rejected": wrong}
    return "no verified-wrong answer found"


def collect(
    tasks: list[Task],
    n: int,
    out: Path,
    seed: int = 0,
    workers: int = 2,
    pairs: bool = False,
    on_row: Callable[[], None] = lambda: None,
) -> CollectReport:
    """Write `n` rows (minus those already in `out`) across `tasks`; returns counts of what happened."""
    report = CollectReport(str(out))
    seen_ids, seen_prompts = existing_rows(out, report)
    todo = [(task, id) for task, id in plan(tasks, n, seed) if f"{task.name}-{id}" not in seen_ids]
    for _ in range(n - len(todo)):
        on_row()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f, ThreadPoolExecutor(workers) as pool:
        for result in ordered(pool, todo, pairs):
            on_row()
            if isinstance(result, str):
                report.bad[result] += 1
            elif result["prompt"] in seen_prompts:
                report.duplicates += 1
            else:
                seen_prompts.add(result["prompt"])
                f.write(json.dumps(result, ensure_ascii=False) + "\n")
                report.written += 1
                if report.written % 256 == 0:
                    f.flush()
        f.flush()
        os.fsync(f.fileno())
    return report


def ordered(pool: ThreadPoolExecutor, todo: list[tuple[Task, int]], pairs: bool) -> Iterator[dict[str, Any] | str]:
    """Rows in plan order, computed a window ahead on the pool (so memory stays flat for any n)."""
    ahead = iter(todo)
    pending = deque(pool.submit(safe_row, task, id, pairs) for task, id in itertools.islice(ahead, 64))
    while pending:
        result = pending.popleft().result()
        for task, id in itertools.islice(ahead, 1):
            pending.append(pool.submit(safe_row, task, id, pairs))
        yield result


def safe_row(task: Task, id: int, pairs: bool) -> dict[str, Any] | str:
    try:
        return make_row(task, id, pairs)
    except Exception as exc:  # one broken instance is counted, not fatal to a long collection
        return f"error building the row ({type(exc).__name__})"
