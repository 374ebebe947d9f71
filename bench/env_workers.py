"""Wall time of stepping a batch of episodes in this process vs in a pool of environment worker processes.

The expert's episodes are recorded first (in this process), then each arm replays their action lists through an
`EnvPool` round by round, as an RL stage steps its live episodes between generations: every live episode gets one
action per round, all sent at once. Each reward must equal the recording's, so every arm does the same work.
Rounds alternate between the arms (who goes first rotates) so both see the same machine load.
Run: `python bench/env_workers.py [--env sciworld] [--episodes 16] [--workers 2] [--repeats 3]`."""

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from engine_overhead import cpu_name  # a sibling script: bench/ is on the path when run as one
from trainguard.tasks.envs.play import expert_episodes
from trainguard.tasks.envs.workers import EnvPool, EnvSpec, EnvWorkersSection


def replay(pool: EnvPool, specs: list[EnvSpec], records: list[dict]) -> tuple[float, int]:
    """(seconds, env steps) to play every recorded episode through `pool`; checks each answer."""
    start = time.perf_counter()
    assert len(pool.open(specs)) == len(
        records
    )  # (ScienceWorld lists a room's objects in varying order: rewards are compared)
    steps, rounds = 0, max(len(r["turns"]) for r in records)
    for k in range(rounds):
        moves = {i: r["turns"][k]["action"] for i, r in enumerate(records) if k < len(r["turns"])}
        results = pool.step(moves)
        for i in moves:
            assert results[i].reward == records[i]["turns"][k]["reward"]
        steps += len(moves)
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="sciworld")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/env_workers.<env>.json")
    args = parser.parse_args()
    seeds = list(range(args.episodes))
    records = expert_episodes(args.env, seeds)
    specs = [EnvSpec.of(args.env, s) for s in seeds]
    arms = {0: EnvPool()} | {w: EnvPool(EnvWorkersSection(processes=w)) for w in args.workers}
    for pool in arms.values():
        replay(pool, specs, records)  # warm: workers started, env imports done
    times: dict[int, list[float]] = {w: [] for w in arms}
    steps = 0
    for r in range(args.repeats):
        order = list(arms)[r % len(arms) :] + list(arms)[: r % len(arms)]
        for w in order:
            seconds, steps = replay(arms[w], specs, records)
            times[w].append(seconds)
    for pool in arms.values():
        pool.close()
    medians = {w: statistics.median(t) for w, t in times.items()}
    result = {
        "env": args.env,
        "episodes": args.episodes,
        "env_steps": steps,
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "median_s": {("inline" if w == 0 else f"{w} workers"): round(s, 3) for w, s in medians.items()},
        "speedup": {f"{w} workers": round(medians[0] / medians[w], 2) for w in args.workers},
        "ms_per_env_step_inline": round(1000 * medians[0] / steps, 2),
    }
    print(json.dumps(result, indent=1))
    out = args.out or Path(__file__).with_name(f"env_workers.{args.env}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
