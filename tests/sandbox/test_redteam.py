"""Hostile programs against the sandbox: each must be contained, with the caller unharmed and the right status.

Fork and memory bombs run only after a canary has shown that the process and memory caps hold, so a broken
sandbox fails a test instead of taking the machine down.
"""

import socket
import threading

from sandbox_helpers import LIMITS, residue, run


def test_infinite_loop_times_out(pool):
    result = run(pool, "while True:\n    pass\n", timeout=1.0)
    assert result.status == "timeout"
    assert 0.9 <= result.wall < 2.0


def test_fork_bomb_is_contained(pool, process_cap_holds):
    result = run(
        pool,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """,
        timeout=2.0,
    )
    assert result.status in ("timeout", "killed")
    assert residue(pool) == []
    assert run(pool, "print('after')").stdout == "after\n"


def test_memory_bomb_hits_the_cap(pool, memory_cap_holds):
    result = run(pool, "x = []\nwhile True:\n    x.append(' ' * (1 << 20))\n")
    assert result.status == "memory"


def test_big_file_is_refused(pool):
    result = run(pool, "open('big', 'wb').write(b'0' * (100 << 20))\n")
    assert result.status in ("error", "memory")
    assert "File too large" in result.stderr or result.status == "memory"
    result = run(
        pool,
        """
        with open('big', 'wb') as f:
            for _ in range(100):
                f.write(b'0' * (1 << 20))
    """,
    )
    assert result.status == "error" and "File too large" in result.stderr


def test_writes_outside_its_folder_fail(pool, tmp_path):
    target = tmp_path / "escaped"
    result = run(
        pool,
        f"""
        for path in [{str(target)!r}, '/usr/escaped', '/etc/escaped', '/escaped']:
            try:
                open(path, 'w').write('x')
                print('wrote', path)
            except OSError as e:
                print('refused', path)
    """,
    )
    assert "wrote" not in result.stdout and result.stdout.count("refused") == 4
    assert not target.exists()


def test_secret_file_is_invisible(pool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    result = run(pool, f"print(open({str(secret)!r}).read())")
    assert result.status == "error" and "hunter2" not in result.stdout
    result = run(pool, "import os\nprint(sorted(os.listdir('/')))")
    assert result.stdout.strip() == str(sorted(["bin", "dev", "lib", "lib64", "proc", "sbin", "tmp", "usr"])) or (
        "work" not in result.stdout and "root" not in result.stdout and "home" not in result.stdout
    )


def test_caller_environment_is_invisible(pool, monkeypatch):
    monkeypatch.setenv("TRAINGUARD_SECRET", "s3cr3t-token")
    result = run(
        pool,
        """
        import os
        found = [k for k, v in os.environ.items() if 's3cr3t' in v]
        for pid in os.listdir('/proc'):
            try:
                if b's3cr3t' in open(f'/proc/{pid}/environ', 'rb').read():
                    found.append(pid)
            except OSError:
                pass
        print(found, sorted(os.environ))
    """,
    )
    assert result.status == "ok" and "s3cr3t" not in result.stdout
    assert result.stdout.startswith("[]")


def test_proc_self_environ_is_empty(pool, monkeypatch):
    monkeypatch.setenv("TRAINGUARD_SECRET", "s3cr3t-token")
    result = run(
        pool,
        """
        import ctypes
        ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: make our own /proc entries readable again
        print(repr(open('/proc/self/environ', 'rb').read()))
    """,
    )
    assert result.status == "ok", result
    assert "TRAINGUARD" not in result.stdout and "PATH" not in result.stdout and "HOME" not in result.stdout


def test_loopback_port_is_unreachable(pool):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)))
    thread.start()
    result = run(
        pool,
        f"""
        import socket
        s = socket.socket()
        s.settimeout(1)
        try:
            s.connect(('127.0.0.1', {port}))
            print('connected')
        except OSError as e:
            print('refused', e)
    """,
    )
    thread.join()
    server.close()
    assert "connected" not in result.stdout and accepted == [None]


def _accept(server: socket.socket):
    try:
        return server.accept()
    except OSError:
        return None


def test_killing_the_parent_harms_nobody(pool):
    result = run(
        pool,
        """
        import os, signal
        for target in (os.getppid(), 1, -1):
            try:
                os.kill(target, signal.SIGKILL)
            except OSError:
                pass
        print('still here')
    """,
    )
    assert result.status == "ok" and result.stdout == "still here\n"
    assert run(pool, "print(7)").stdout == "7\n"


def test_setsid_child_does_not_outlive_the_timeout(pool):
    result = run(
        pool,
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    time.sleep(0.1)
            os._exit(0)
        while True:
            pass
    """,
        timeout=1.0,
    )
    assert result.status == "timeout"
    assert residue(pool) == []


def test_huge_stdout_is_capped_while_reading(pool):
    result = run(pool, "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * (1 << 20))\n")
    assert result.status == "output_limit"
    assert len(result.stdout) == LIMITS.output_kb << 10
    assert result.wall < 3.0


def test_ctypes_tricks_are_contained(pool):
    crash = run(pool, "import ctypes\nctypes.string_at(0)\n")
    assert crash.status == "killed" and crash.returncode < 0
    escalate = run(
        pool,
        """
        import ctypes, resource
        libc = ctypes.CDLL(None, use_errno=True)
        print(libc.setuid(0), libc.setgid(0))
        try:
            resource.setrlimit(resource.RLIMIT_NPROC, (100000, 100000))
            print('raised')
        except (ValueError, OSError):
            print('denied')
    """,
    )
    assert escalate.status == "ok"
    assert escalate.stdout.split() == ["-1", "-1", "denied"]


def test_noisy_stderr_does_not_spoil_a_correct_program(pool):
    result = run(pool, "import sys\nfor i in range(5000):\n    print('warning', i, file=sys.stderr)\nprint(42)\n")
    assert result.status == "ok" and result.stdout == "42\n"
    assert result.stderr.startswith("warning 0")
