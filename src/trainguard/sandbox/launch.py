"""How a sandbox worker is started: bubblewrap namespaces where it runs, resource limits where it does not.

Two traps on shared machines decide the shape. Process limits do not bind root, so a root caller drops each
worker to its own unprivileged uid (which also makes kill(-1) safe in the fallback). bubblewrap's own process
keeps the environment it was started with, so it is started with an empty one, not told to `--clearenv`.
"""

import contextlib
import fcntl
import functools
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

WORKER_SOURCE = (Path(__file__).parent / "worker.py").read_text()
UID_BASE = 200_000  # far above login and system uids; no passwd entry is needed to run as a uid
UID_COUNT = 65_536  # uids leased from UID_BASE on
PIDS_ROOT = Path("/sys/fs/cgroup/pids")


class SandboxUnavailable(RuntimeError):
    """No way to run a program with the isolation that was asked for."""


@dataclass(frozen=True)
class Isolation:
    """The isolation one pool runs with, and what it leaves open."""

    bwrap: str | None  # path of bubblewrap, or None for the resource-limit fallback
    dedicated_uids: bool  # each worker runs as its own unprivileged uid
    reason: str = ""  # why bubblewrap is not used

    def gaps(self) -> list[str]:
        gaps = [] if self.bwrap else ["network", "host filesystem (read access)", "host process list"]
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


def bwrap_prefix(bwrap: str, prefix: str, tmp_mb: int) -> list[str]:
    """bubblewrap with every namespace unshared, a read-only /usr, and nothing of the host but a private /tmp."""
    cmd = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]
    cmd += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            cmd += ["--ro-bind", str(target), f"/{link}"]
    if not prefix.startswith("/usr"):
        cmd += ["--ro-bind", prefix, prefix]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_mb << 20), "--tmpfs", "/tmp", "--chdir", "/tmp"]
    return [*cmd, "--remount-ro", "/", "--"]  # the sandbox's own root, too, is read-only: only /tmp takes writes


def worker_command(isolation: Isolation, tmp_mb: int, uid: int | None) -> list[str]:
    python, prefix = interpreter(uid is not None)
    if isolation.bwrap:
        return [*bwrap_prefix(isolation.bwrap, prefix, tmp_mb), python, "-I", "-S", "-c", WORKER_SOURCE]
    return [python, "-I", "-S", "-c", WORKER_SOURCE, "dedicated-uid" if uid is not None else "shared-uid"]


@functools.cache
def detect(mode: str = "auto") -> Isolation:
    """Probe once per process whether bubblewrap can start a worker here; `mode` is auto, bwrap or rlimits."""
    dedicated = os.geteuid() == 0
    reason = probe_bwrap(dedicated) if mode != "rlimits" else "isolation: rlimits was asked for"
    if not reason:
        return Isolation(shutil.which("bwrap"), dedicated)
    if mode == "bwrap":
        raise SandboxUnavailable(reason)
    isolation = Isolation(None, dedicated, reason)
    warnings.warn(
        f"SANDBOX NOT ISOLATED: {reason}. Programs run with resource limits only; open to them: "
        + ", ".join(isolation.gaps()),
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
    probe = [*bwrap_prefix(bwrap, prefix, 8), python, "-I", "-S", "-c", "print(42)"]
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


class PidsCgroup:
    """A pids cgroup (v1) per worker where the hierarchy is writable: a kernel-enforced process cap."""

    def __init__(self, name: str, max_pids: int, uid: int | None) -> None:
        self.path: Path | None = None
        try:
            path = PIDS_ROOT / name
            path.mkdir(exist_ok=True)  # its uid is leased: a folder of that name is an empty leftover
            (path / "pids.max").write_text(str(max_pids))
            if uid is not None:
                os.chown(path / "cgroup.procs", uid, uid)
            self.path = path
        except OSError:
            self.path = None

    def wrap(self, cmd: list[str]) -> list[str]:
        """The command, made to enter this cgroup (as itself, before exec) when there is one."""
        if self.path is None:
            return cmd
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *cmd]

    def pids(self) -> list[int]:
        if self.path is None:
            return []
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
