"""How a sandbox worker is started: bubblewrap namespaces where it runs, resource limits where it does not.

Two traps on shared machines decide the shape. Process limits do not bind root, so a root caller drops each
worker to its own unprivileged uid. bubblewrap's own process keeps the environment it was started with, so it
is started with an empty one, not told to `--clearenv`. Inside, the worker keeps CAP_SYS_ADMIN over its own
user namespace only, to mount each run a fresh /tmp and /dev/shm; each run drops every capability before the
program starts, and no nested user namespace can be made at all (`--disable-userns`).
"""

import fcntl
import functools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from trainguard.sandbox import seccomp
from trainguard.sandbox.cgroups import memory_cgroup_usable

# the run's side first, then the server, whose `main()` runs it all (both are standard library only)
WORKER_SOURCE = "\n".join((Path(__file__).parent / name).read_text() for name in ("confine.py", "worker.py"))
UID_BASE = 200_000  # far above login and system uids; no passwd entry is needed to run as a uid
UID_COUNT = 65_536  # uids leased from UID_BASE on


class SandboxUnavailable(RuntimeError):
    """No way to run a program with the isolation that was asked for."""


@dataclass(frozen=True)
class Isolation:
    """The isolation one pool runs with, and what it leaves open."""

    bwrap: str | None  # path of bubblewrap, or None for the resource-limit fallback
    dedicated_uids: bool  # each worker runs as its own unprivileged uid
    memory_cgroup: bool = False  # one memory cap over everything a run holds (else per-process RLIMIT_AS)
    reason: str = ""  # why bubblewrap is not used
    memory_reason: str = ""  # why there is no memory cgroup

    def gaps(self) -> list[str]:
        """Every opening a program still has, reads and writes both: the fallback's warning names them all."""
        gaps = []
        if not self.bwrap:
            kept = "deleted after each run from /tmp, /var/tmp and /dev/shm" if self.dedicated_uids else "kept"
            gaps += ["network", "host filesystem (read access)", "host process list"]
            gaps += [f"writes to the host's world-writable folders ({kept}), with no inode cap"]
        if not self.memory_cgroup:
            gaps.append(
                "memory: memory_mb caps each process's address space, not the run (so runs get one process unless "
                "`processes` is set; tmpfs and kernel memory are outside it)"
            )
        if not seccomp.supported():
            gaps.append(f"system calls: no seccomp filter for {platform.machine()}")
        if not self.dedicated_uids and os.geteuid() == 0:
            gaps.append("runs as root: process limits do not bind")
        return gaps


class UidLease:
    """An unprivileged uid that one worker holds alone, across every pool and every trainguard process on the
    machine: a lock file per uid, flocked while the worker lives (the kernel releases it if the process dies).
    A uid shared by two workers would let one's end-of-run `kill -1` reach the other's programs."""

    folder = Path(tempfile.gettempdir()) / "trainguard-uids"

    def __init__(self) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        for uid in range(UID_BASE, UID_BASE + UID_COUNT):
            handle = open(self.folder / str(uid), "a")  # noqa: SIM115  (held for the lease's lifetime)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            self.uid, self._handle = uid, handle
            return
        raise SandboxUnavailable(f"all {UID_COUNT} sandbox uids from {UID_BASE} are leased")

    def release(self) -> None:
        self._handle.close()


def lease_uid() -> UidLease | None:
    """A uid of its own per worker when we can switch users (root); None otherwise."""
    return UidLease() if os.geteuid() == 0 else None


def world_usable(path: Path) -> bool:
    """Whether any user can reach and run `path` (every parent folder searchable, the file executable)."""
    path = path.resolve()
    if not path.is_file() or not os.stat(path).st_mode & 0o001:
        return False
    return all(os.stat(parent).st_mode & 0o001 for parent in path.parents)


@functools.cache
def interpreter(dropping_privileges: bool) -> tuple[str, str]:
    """The Python that runs programs and its installation prefix (bound read-only into the sandbox)."""
    candidates = [Path(sys.executable), Path(getattr(sys, "_base_executable", sys.executable))]
    candidates += [Path("/usr/bin/python3"), Path("/usr/local/bin/python3")]
    for path in candidates:
        if path.is_file() and (not dropping_privileges or world_usable(path)):
            prefix = subprocess.run(
                [str(path), "-I", "-S", "-c", "import sys; print(sys.base_prefix)"],
                capture_output=True,
                text=True,
                env={},
                timeout=30,
            ).stdout.strip()
            return str(path.resolve()), prefix or "/usr"
    raise SandboxUnavailable(
        "no Python interpreter that an unprivileged user can run (tried " + ", ".join(map(str, candidates)) + ")"
    )


def bwrap_prefix(bwrap: str, prefix: str) -> list[str]:
    """bubblewrap with every namespace unshared, a read-only /usr, and nothing of the host but a private /tmp."""
    cmd = [bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--cap-add", "CAP_SYS_ADMIN"]
    cmd += ["--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), f"/{link}"]
    if not prefix.startswith("/usr"):
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(1 << 20), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return [*cmd, "--remount-ro", "/", "--"]  # read-only everywhere: each run mounts its own /tmp and /dev/shm


def worker_command(isolation: Isolation, uid: int | None, cgroup_fd: int | None, base: str) -> list[str]:
    """The worker's command line; its one argument is its JSON configuration (nothing secret: a program may
    read it in /proc)."""
    python, prefix = interpreter(uid is not None)
    rules = seccomp.filter_program() if seccomp.supported() else seccomp.Filter(b"", [])
    config = {
        "mounts": bool(isolation.bwrap),
        "own_uid": uid is not None,
        "seccomp": rules.program.hex(),
        "pid_slots": rules.pid_slots,
        "cgroup_fd": cgroup_fd,
        "base": base,
    }
    command = [python, "-I", "-S", "-c", WORKER_SOURCE, json.dumps(config)]
    return [*bwrap_prefix(isolation.bwrap, prefix), *command] if isolation.bwrap else command


@functools.cache
def detect(mode: str = "auto") -> Isolation:
    """Probe once per process whether bubblewrap can start a worker here; `mode` is auto, bwrap or rlimits."""
    dedicated = os.geteuid() == 0
    reason = probe_bwrap(dedicated) if mode != "rlimits" else "isolation: rlimits was asked for"
    if reason and mode == "bwrap":
        raise SandboxUnavailable(reason)
    memory_reason = memory_cgroup_usable()
    bwrap = None if reason else shutil.which("bwrap")
    isolation = Isolation(bwrap, dedicated, not memory_reason, reason, memory_reason)
    if isolation.gaps():
        why = "; ".join(filter(None, [reason, memory_reason]))
        warnings.warn(
            f"SANDBOX NOT ISOLATED: {why}. Open to programs: " + "; ".join(isolation.gaps()),
            RuntimeWarning,
            stacklevel=2,
        )
    return isolation


def probe_bwrap(dedicated: bool) -> str:
    """Why bubblewrap cannot run a program here, or "" when it can."""
    bwrap = shutil.which("bwrap")
    if not bwrap:
        return "bubblewrap is not installed (Debian: apt-get install bubblewrap)"
    python, prefix = interpreter(dedicated)
    probe = [*bwrap_prefix(bwrap, prefix), python, "-I", "-S", "-c", "print(42)"]
    lease = lease_uid() if dedicated else None
    try:
        uid = lease.uid if lease else None
        done = subprocess.run(probe, env={}, capture_output=True, text=True, timeout=30, **user_args(uid))
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bubblewrap cannot start here: {exc}"
    finally:
        if lease is not None:
            lease.release()
    return (
        "" if done.stdout.strip() == "42" else f"bubblewrap cannot start here: {done.stderr.strip() or done.returncode}"
    )


def user_args(uid: int | None) -> dict:
    """Popen keywords that drop to `uid` (and its own group, no supplementary groups)."""
    return {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
