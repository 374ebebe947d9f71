"""The sandbox's contract: every status, stdin, parallel runs, the fallback's warning, and `sandbox exec --json`."""

import json

import pytest
from typer.testing import CliRunner

from trainguard.cli import app
from trainguard.sandbox import Limits, SandboxPool, detect


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, limits=Limits(timeout=2.0, memory_mb=256)) as p:
        yield p


@pytest.mark.parametrize(
    ("source", "status", "returncode"),
    [
        ("print(sum(map(int, input().split())))", "ok", 0),
        ("raise ValueError('bad')", "error", 1),
        ("import sys; sys.exit(3)", "error", 3),
        ("while True: pass", "timeout", None),
        ("x = bytearray(1 << 30)", "memory", -9),
        ("import sys\nwhile True: sys.stdout.write('y' * 65536)", "output_limit", None),
        ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "killed", -11),
    ],
)
def test_each_status(pool, source, status, returncode):
    if status == "memory" and not pool.isolation.memory_cgroup:  # an address-space cap: a MemoryError
        status, returncode = "error", 1
    result = pool.run(source, stdin="2 3 4\n", timeout=1.0)
    assert result.status == status, result
    if returncode is not None:
        assert result.returncode == returncode
    if status == "ok":
        assert result.stdout == "9\n" and result.cpu > 0 and result.wall < 1.0


def test_map_keeps_order_across_workers(pool):
    results = pool.map([(f"print({i} * int(input()))", "3") for i in range(40)])
    assert [r.stdout for r in results] == [f"{3 * i}\n" for i in range(40)]


def test_cpu_limit_is_separate_from_wall(pool):
    result = pool.run("while True: pass", timeout=5.0, cpu=1.0)
    assert result.status == "timeout" and result.wall < 3.0 and result.cpu >= 0.9


def test_fallback_warns_what_is_not_isolated():
    detect.cache_clear()
    with pytest.warns(RuntimeWarning, match="SANDBOX NOT ISOLATED.*network"):
        isolation = detect("rlimits")
    with SandboxPool(workers=1, limits=Limits(timeout=1.0), isolation="rlimits") as fallback:
        assert fallback.isolation.bwrap is None
        assert fallback.run("print(6 * 7)").stdout == "42\n"
        assert fallback.run("while True: pass").status == "timeout"
        escaped = fallback.run(
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint(os.getuid())",
            processes=4,  # without a memory cgroup the fallback allows one process unless told otherwise
        )
        assert escaped.status == "ok" and int(escaped.stdout) != 0  # never root, even when the caller is
    assert "network" in isolation.gaps()


def test_sandbox_exec_json(tmp_path):
    program = tmp_path / "p.py"
    program.write_text("import sys\nprint(sys.stdin.read().upper(), end='')\nprint('note', file=sys.stderr)\n")
    stdin = tmp_path / "in.txt"
    stdin.write_text("hello")
    out = CliRunner().invoke(app, ["sandbox", "exec", str(program), "--stdin", str(stdin), "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["status"] == "ok" and result["stdout"] == "HELLO" and result["stderr"] == "note\n"
    assert set(result) == {"status", "returncode", "stdout", "stderr", "wall", "cpu"}
    program.write_text("while True: pass\n")
    out = CliRunner().invoke(app, ["sandbox", "exec", str(program), "--timeout", "0.5", "--json"])
    assert json.loads(out.stdout)["status"] == "timeout"
    out = CliRunner().invoke(app, ["sandbox", "exec", str(program), "--timeout", "-1"])
    assert out.exit_code == 2 and "timeout" in out.output


def test_two_pools_in_one_process_never_share_a_uid_and_closing_one_spares_the_other():
    import os

    with SandboxPool(workers=1) as first:
        assert first.run("print(1)").stdout == "1\n"
        with SandboxPool(workers=1) as second:
            assert second.run("print(2)").stdout == "2\n"
            uids = {first.workers[0].uid, second.workers[0].uid}
            assert len(uids) == 2 or os.geteuid() != 0  # leased, not derived from the pid
        result = first.run("print(3)")  # the second pool's clean-up left the first's worker alone
        assert result.ok and result.stdout == "3\n"
