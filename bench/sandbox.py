"""Sandbox throughput: executions per second, the naive way vs the pool, side by side in one run.

naive: one fresh `python -I -S` subprocess per program with resource limits (CPU, address space, file size,
processes) set before exec, as the caller's user, no namespaces; two at a time so both cores work.
pool: trainguard's SandboxPool with two workers and its full isolation on (bubblewrap namespaces, a leased
unprivileged uid per worker, read-only root, pids and memory cgroups where writable; per run a fork from the
clean zygote, a fresh tmpfs /tmp, no capabilities, the seccomp filter, every descendant killed after it).
Rounds alternate naive/pool so both see the same machine load.
Run: `python bench/sandbox.py [--runs 300 --rounds 3]` (also `make bench`).
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trainguard.sandbox import Limits, SandboxPool
from trainguard.sandbox.launch import interpreter
from trainguard.tasks import problems

PRINT_ONE = "print(1)\n"
DED = next(f for f in problems.FAMILIES if f.name == "max_subarray")
DED_SOURCE = DED.solution.format()
DED_INPUT = "3 -7 12 5 -2 9 -20 4 8 -1 6\n"


def naive_limits(limits: Limits) -> None:
    cpu = int(limits.timeout) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_mb << 20,) * 2)


def naive_run(python: str, path: str, stdin: str, limits: Limits) -> str:
    done = subprocess.run(
        [python, "-I", "-S", path],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=limits.timeout,
        env={},
        preexec_fn=lambda: naive_limits(limits),  # this bench is single-threaded where it forks
        start_new_session=True,
    )
    return done.stdout


def rate_naive(source: str, stdin: str, runs: int, limits: Limits) -> float:
    python, _ = interpreter(False)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    try:
        with ThreadPoolExecutor(2) as ex:
            start = time.perf_counter()
            outs = list(ex.map(lambda _: naive_run(python, f.name, stdin, limits), range(runs)))
            elapsed = time.perf_counter() - start
    finally:
        os.unlink(f.name)
    assert len(set(outs)) == 1 and outs[0], "naive runs disagree or printed nothing"
    return runs / elapsed


def rate_pool(pool: SandboxPool, source: str, stdin: str, runs: int) -> float:
    start = time.perf_counter()
    results = pool.map([(source, stdin)] * runs)
    elapsed = time.perf_counter() - start
    assert all(r.ok for r in results) and len({r.stdout for r in results}) == 1, "pool runs failed or disagree"
    return runs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench/sandbox.json"))
    args = parser.parse_args()
    limits = Limits(timeout=5.0)
    start = time.perf_counter()
    pool = SandboxPool(workers=2, limits=limits, isolation="bwrap")
    pool.map([(PRINT_ONE, "")] * 2)  # start both workers
    cold = time.perf_counter() - start
    programs = {"print(1)": (PRINT_ONE, ""), "DED program (max_subarray)": (DED_SOURCE, DED_INPUT)}
    rows = []
    with pool:
        for name, (source, stdin) in programs.items():
            naive, pooled = [], []
            for _ in range(args.rounds):
                naive.append(rate_naive(source, stdin, args.runs, limits))
                pooled.append(rate_pool(pool, source, stdin, args.runs))
            n, p = statistics.median(naive), statistics.median(pooled)
            rows.append({"program": name, "naive_per_s": n, "pool_per_s": p, "speedup": p / n})
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; pool start {cold:.2f} s")
    print(f"{'program':30} {'naive exec/s':>13} {'pool exec/s':>12} {'pool/naive':>11}")
    for row in rows:
        print(f"{row['program']:30} {row['naive_per_s']:13.1f} {row['pool_per_s']:12.1f} {row['speedup']:10.2f}x")
    record = {"runs": args.runs, "rounds": args.rounds, "pool_start_s": cold, "cores": os.cpu_count(), "rows": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
