"""Kernel-enforced caps per worker where the cgroup hierarchy is writable: a process count and one memory cap.

The memory cap is a cgroup that the worker's zygote joins once (through a descriptor of its `cgroup.procs` that
the worker inherits), so that every run is born in it and everything a run holds counts once: every process and
thread, shared-memory pages, the run's tmpfs and the kernel memory behind its files. Runs make themselves the
kernel's first choice at the cap (oom_score_adj 1000), and the server stays outside. Both v1 (`memory.*`) and v2
(`memory.max`) are handled. Limits are rewritten only when a run asks for a different one.
"""

import contextlib
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


class PidsCgroup:
    """A pids cgroup (v1) per worker where the hierarchy is writable: a kernel-enforced process cap."""

    def __init__(self, name: str, max_pids: int, uid: int | None) -> None:
        self.path: Path | None = None
        self.max_pids = 0
        try:
            path = CGROUP_ROOT / "pids" / name
            path.mkdir(exist_ok=True)  # its uid is leased: a folder of that name is an empty leftover
            self.path = path
            self.limit(max_pids)
            if uid is not None:
                os.chown(path / "cgroup.procs", uid, uid)
        except OSError:
            remove(self.path)
            self.path = None

    def limit(self, max_pids: int) -> None:
        if self.path is not None and max_pids != self.max_pids:
            (self.path / "pids.max").write_text(str(max_pids))
            self.max_pids = max_pids

    def wrap(self, cmd: list[str]) -> list[str]:
        """The command, made to enter this cgroup (as itself, before exec) when there is one."""
        if self.path is None:
            return cmd
        return ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *cmd]

    def pids(self) -> list[int]:
        return procs(self.path)

    def remove(self) -> None:
        remove(self.path)


class MemoryCgroup:
    """The cgroup that caps one worker's runs; `fd` is a write descriptor of its `cgroup.procs` for the worker."""

    def __init__(self, name: str) -> None:
        self.version, parent = memory_parent()
        self.path = parent / name
        self.path.mkdir(exist_ok=True)  # named by a leased uid: an existing folder is an empty leftover
        try:
            if self.version == 2 and (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
            self.fd = os.open(self.path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            remove(self.path)
            raise
        self.limit_bytes = 1 << 63  # a new cgroup starts unlimited
        self.oom_kills = 0
        self.new_oom_kills()  # a leftover folder of a crashed process may have counted kills already

    def limit(self, megabytes: int) -> None:
        """Cap the next run at `megabytes` (swap included, so that nothing is pushed out to disk instead)."""
        limit = megabytes << 20
        if limit == self.limit_bytes:
            return
        if self.version == 2:
            (self.path / "memory.max").write_text(str(limit))
        else:
            files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]  # memsw must stay >= the limit
            for name in files if limit < self.limit_bytes else reversed(files):
                with contextlib.suppress(FileNotFoundError):  # memsw exists only where swap is accounted
                    (self.path / name).write_text(str(limit))
        self.limit_bytes = limit

    def new_oom_kills(self) -> int:
        """How many processes the kernel has killed in this cgroup for want of memory since the last call."""
        text = (self.path / ("memory.events" if self.version == 2 else "memory.oom_control")).read_text()
        total = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("oom_kill ")), 0)
        new, self.oom_kills = total - self.oom_kills, total
        return new

    def pids(self) -> list[int]:
        return procs(self.path)

    def remove(self) -> None:
        os.close(self.fd)
        remove(self.path)


def memory_parent() -> tuple[int, Path]:
    """The cgroup version and the folder to make run cgroups in: under our own memory cgroup where it is
    visible (so that our own cap still holds over them), else at the hierarchy's root."""
    v1 = CGROUP_ROOT / "memory"
    if (v1 / "memory.limit_in_bytes").exists():
        own = own_cgroup("memory")
        nested = v1 / own.lstrip("/") if own else v1
        return 1, nested if nested.is_dir() and os.access(nested, os.W_OK) else v1
    controllers = CGROUP_ROOT / "cgroup.subtree_control"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return 2, CGROUP_ROOT  # v2 forbids processes beside child cgroups, so our own cgroup cannot parent them
    raise OSError("no memory cgroup controller is mounted")


def own_cgroup(controller: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if controller in names.split(","):
                return path
    return ""


def memory_cgroup_usable() -> str:
    """Why no memory cgroup can be made here, or "" when one can."""
    try:
        probe = MemoryCgroup(f"trainguard-probe-{os.getpid()}")
    except OSError as exc:
        return f"no writable memory cgroup ({exc})"
    probe.remove()
    return ""


def procs(path: Path | None) -> list[int]:
    if path is None:
        return []
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def remove(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.rmdir()
