"""The red-team pool and its canaries, shared by the sandbox's hostile-program suites.

Fork and memory bombs run only after a canary has shown that the process and memory caps hold, so a broken
sandbox fails a test instead of taking the machine down.
"""

import pytest
from sandbox_helpers import LIMITS, residue, run

from trainguard.sandbox import SandboxPool


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=1, limits=LIMITS) as p:
        assert p.isolation.bwrap, f"bubblewrap must be usable where the red-team suite runs: {p.isolation.reason}"
        yield p


@pytest.fixture(scope="module")
def process_cap_holds(pool):
    """Canary: a bounded burst of forks stops at the cap and leaves nothing behind."""
    result = run(
        pool,
        """
        import os, time
        n = 0
        try:
            for _ in range(200):
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                n += 1
        except OSError:
            pass
        print(n)
    """,
    )
    assert result.status == "ok", result
    forked = int(result.stdout)
    assert forked < LIMITS.processes, f"process cap did not hold: {forked} forks"
    assert residue(pool) == [], "forked children outlived the run"
    return True


@pytest.fixture(scope="module")
def memory_cap_holds(pool):
    """Canary: allocating in 16 MiB steps is stopped near the cap (at most twice it is ever attempted)."""
    result = run(
        pool,
        """
        blocks = []
        for _ in range(32):
            blocks.append(bytearray(16 << 20))
            print(len(blocks) * 16, flush=True)
    """,
    )
    assert result.status == "memory", result
    assert int(result.stdout.split()[-1]) <= LIMITS.memory_mb, f"memory cap did not hold: {result.stdout} MiB"
    return True
