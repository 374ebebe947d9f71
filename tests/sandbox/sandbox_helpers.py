"""What the sandbox suites share: the red-team limits, running dedented source, and finding leftovers."""

import textwrap

from trainguard.sandbox import Limits, SandboxPool
from trainguard.sandbox.worker import descendants

LIMITS = Limits(timeout=3.0, memory_mb=256, processes=16, file_mb=8, output_kb=256)


def run(pool: SandboxPool, source: str, stdin: str = "", **overrides):
    return pool.run(textwrap.dedent(source), stdin, **overrides)


def residue(pool: SandboxPool) -> list[int]:
    """Host pids left in the worker's process tree besides bubblewrap, the server and its zygote."""
    return sorted(descendants(pool.workers[0].proc.pid))[2:]  # the two oldest: the server (PID 1), the zygote
