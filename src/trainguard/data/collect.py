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

from trainguard.errors import DataError
from trainguard.tasks import Task

SEED_STRIDE = 10_000_000  # instance ids of seed s start at s * SEED_STRIDE; held-out eval ids start at 1e9
WRONG_TRIES = 8
MAX_DRAWS_PER_ROW = 10


@dataclass
class CollectReport:
    out: str
    target: int = 0
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
        if self.written + self.resumed < self.target:
            parts.append(f"SHORT: {self.target - self.written - self.resumed} rows missing (too few distinct prompts)")
        return "; ".join(parts)


def plan(tasks: list[Task], seed: int) -> Iterator[tuple[Task, int]]:
    """(task, instance id) pairs, tasks interleaved round-robin, for as long as the caller needs rows."""
    for i in range(SEED_STRIDE * len(tasks)):
        yield tasks[i % len(tasks)], seed * SEED_STRIDE + i // len(tasks)


def whole_lines(path: Path, report: CollectReport) -> list[str]:
    """The file's lines, after cutting a torn (unterminated) last line so that appending stays valid."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
        report.torn_tail = True
        data = data[: data.rfind(b"\n") + 1]
    return data.decode("utf-8", "replace").splitlines()


def existing_rows(path: Path, report: CollectReport, pairs: bool) -> tuple[set[str], set[str]]:
    """Ids and prompts already written; cuts a torn (unterminated) last line so appending stays valid. A file
    of the other kind (pairs when collecting SFT rows, or the reverse) is refused, not counted as done."""
    ids: set[str] = set()
    prompts: set[str] = set()
    if not path.exists():
        return ids, prompts
    for line in whole_lines(path, report):
        try:
            row = json.loads(line)
            ids.add(str(row["id"]))
            prompts.add(row["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError):
            report.bad["unreadable row already in the file"] += 1
            continue
        if ("response_chosen" in row) != pairs:
            have, want = ("preference pairs", "SFT rows") if not pairs else ("SFT rows", "preference pairs")
            raise DataError(f"{path} holds {have}; collecting {want} needs another --out file")
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
    """Fill `out` up to `n` rows across `tasks`, drawing further ids past bad or duplicate ones (at most
    MAX_DRAWS_PER_ROW draws per row, for tasks with few distinct prompts); returns counts of what happened."""
    report = CollectReport(str(out), target=n)
    seen_ids, seen_prompts = existing_rows(out, report, pairs)
    for _ in range(min(report.resumed, n)):
        on_row()
    todo = ((task, id) for task, id in plan(tasks, seed) if f"{task.name}-{id}" not in seen_ids)
    todo = itertools.islice(todo, max(0, n - report.resumed) * MAX_DRAWS_PER_ROW)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as f, ThreadPoolExecutor(workers) as pool:
        for result in ordered(pool, todo, pairs):
            if report.resumed + report.written >= n:
                break
            if isinstance(result, str):
                report.bad[result] += 1
            elif result["prompt"] in seen_prompts:
                report.duplicates += 1
            else:
                seen_prompts.add(result["prompt"])
                f.write(json.dumps(result, ensure_ascii=False) + "\n")
                report.written += 1
                on_row()
                if report.written % 256 == 0:
                    f.flush()
        f.flush()
        os.fsync(f.fileno())
    return report


def ordered(pool: ThreadPoolExecutor, todo: Iterator[tuple[Task, int]], pairs: bool) -> Iterator[dict[str, Any] | str]:
    """Rows in plan order, computed a window ahead on the pool (so memory stays flat for any n)."""
    ahead = iter(todo)
    pending = deque(pool.submit(safe_row, task, id, pairs) for task, id in itertools.islice(ahead, 64))
    # On early exit the window's pending futures still run to completion: a bounded cost of 64 rows.
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


# -- text environments: the scripted expert's episodes ---------------------------------------------------------


@dataclass(frozen=True)
class EnvSpec:
    """An environment to collect from: its registered name and parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)


def episode_rows(spec: EnvSpec, env_seed: int, episodes: bool, eos: str) -> list[dict[str, Any]] | str:
    """The rows of one expert episode (its record, or one SFT record per turn), or why there are none: only a
    solved episode demonstrates anything."""
    from trainguard.tasks.envs.play import expert_episodes, sft_records

    record = expert_episodes(spec.name, [env_seed], **spec.params)[0]
    if not record["success"]:
        return "expert episode not solved"
    if episodes:
        return [{"id": f"{spec.name}-{env_seed}", **record}]
    return sft_records(record, eos)


def existing_episode_rows(path: Path, report: CollectReport, episodes: bool) -> set[str]:
    """Row ids already written (a torn last line is cut off); a file of the other kind is refused."""
    ids: set[str] = set()
    if not path.exists():
        return ids
    for line in whole_lines(path, report):
        try:
            row = json.loads(line)
            ids.add(str(row["id"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            report.bad["unreadable row already in the file"] += 1
            continue
        if ("turns" in row) != episodes:
            have, want = ("episode records", "SFT rows") if not episodes else ("SFT rows", "episode records")
            raise DataError(f"{path} holds {have}; collecting {want} needs another --out file")
    return ids


def collect_episodes(
    envs: list[EnvSpec],
    n: int,
    out: Path,
    seed: int = 0,
    episodes: bool = False,
    eos: str = "<eos>",
    on_row: Callable[[], None] = lambda: None,
) -> CollectReport:
    """Fill `out` up to `n` solved expert episodes across `envs` (interleaved; env seeds of seed s from
    s * SEED_STRIDE): SFT records {id, task, prompt, completion} per turn, or with `episodes` one episode record
    {id, env, seed, turns, return, success} each. Counts are in episodes. An episode replays exactly, so a
    resumed collection rewrites only the rows of a half-written one; worlds seen before are skipped as duplicates.
    `eos` is the EOS text inside SFT prompts (see tasks.envs.play.sft_records)."""
    report = CollectReport(str(out), target=n)
    have = existing_episode_rows(out, report, episodes)
    seen_worlds: set[tuple[str, str]] = set()
    out.parent.mkdir(parents=True, exist_ok=True)
    draws = n * MAX_DRAWS_PER_ROW
    with open(out, "a", encoding="utf-8") as f:
        for i in range(draws):
            if report.resumed + report.written >= n:
                break
            spec, env_seed = envs[i % len(envs)], seed * SEED_STRIDE + i // len(envs)
            try:
                rows = episode_rows(spec, env_seed, episodes, eos)
            except Exception as exc:  # one broken episode is counted, not fatal to a long collection
                rows = f"error playing the expert ({type(exc).__name__})"
            if isinstance(rows, str):
                report.bad[rows] += 1
                continue
            world = rows[0]["turns"][0]["observation"] if episodes else rows[0]["prompt"]
            if (spec.name, world) in seen_worlds:
                report.duplicates += 1
                continue
            seen_worlds.add((spec.name, world))
            missing = [row for row in rows if row["id"] not in have]
            if missing:
                f.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in missing))
            if len(missing) < len(rows):
                report.resumed += 1  # a half-written episode was completed above; it still counts as resumed
            else:
                report.written += 1
            on_row()
        f.flush()
        os.fsync(f.fileno())
    return report
