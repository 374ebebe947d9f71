"""A pool of warm sandbox workers: each runs one program at a time, and a dead or stuck one is replaced."""

import atexit
import contextlib
import json
import os
import queue
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from trainguard.sandbox.cgroups import MemoryCgroup, PidsCgroup
from trainguard.sandbox.launch import Isolation, SandboxUnavailable, detect, lease_uid, user_args, worker_command
from trainguard.sandbox.limits import ExecResult, Limits, SandboxSection

if TYPE_CHECKING:
    from trainguard.sandbox.ray_pool import RayPool

STARTUP_S = 20.0  # a cold start of bubblewrap + Python, generously
GRACE_S = 5.0  # how long past a run's timeout the host waits before it declares the worker stuck
PROCESS_OVERHEAD = 2  # the server and the zygote share the per-uid process count (RLIMIT_NPROC) with the program
PIDS_OVERHEAD = 4  # the pids cgroup also holds the wrapping shell's exec (bubblewrap) and one to spare


class Worker:
    """One long-lived sandboxed fork server, spoken to in length-prefixed JSON frames."""

    def __init__(self, slot: int, isolation: Isolation, limits: Limits) -> None:
        self.slot, self.isolation = slot, isolation
        self.lease = lease_uid() if isolation.dedicated_uids else None
        self.uid = self.lease.uid if self.lease is not None else None
        name = f"trainguard-uid-{self.uid}" if self.uid is not None else f"trainguard-{os.getpid()}-{id(self)}"
        self.pids = PidsCgroup(name, (limits.processes or 32) + PIDS_OVERHEAD, self.uid)
        self.memory = MemoryCgroup(name) if isolation.memory_cgroup else None
        self.base = None if isolation.bwrap else private_folder(self.uid)
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (bubblewrap's errors; closed in close())
        cgroup_fd = self.memory.fd if self.memory else None
        cmd = self.pids.wrap(worker_command(isolation, self.uid, cgroup_fd, self.base or ""))
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env={},  # bubblewrap's own environment is readable through /proc: give it nothing
            cwd=self.base or "/",  # never the caller's folder
            pass_fds=[cgroup_fd] if cgroup_fd is not None else [],
            start_new_session=True,
            **user_args(self.uid),
        )
        ready = self.receive(time.monotonic() + STARTUP_S)
        if not ready or not ready.get("ready"):
            self.close()
            self.log.seek(0)
            raise SandboxUnavailable(
                f"sandbox worker did not start: {self.log.read().decode(errors='replace')[-2000:]}"
            )

    def send(self, request: dict) -> None:
        data = json.dumps(request).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(struct.pack(">I", len(data)) + data)
        self.proc.stdin.flush()

    def receive(self, deadline: float) -> dict | None:
        """One reply frame, or None if the worker died or missed the deadline."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        buf = b""
        need = 4
        size = None
        while len(buf) < need:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            part = os.read(fd, max(need - len(buf), 1 << 16))
            if not part:
                return None
            buf += part
            if size is None and len(buf) >= 4:
                size = struct.unpack(">I", buf[:4])[0]
                need = 4 + size
        return json.loads(buf[4:need])

    def run(self, source: str, stdin: str, limits: Limits) -> tuple[ExecResult | None, bool]:
        """The program's result (None when the worker itself failed) and whether the worker may run another."""
        request = {"source": source, "stdin": stdin, **limits.request(self.memory is not None)}
        request["nproc"] += PROCESS_OVERHEAD
        self.pids.limit(request["nproc"] + PIDS_OVERHEAD)
        if self.memory is not None:
            self.memory.limit(limits.memory_mb)
        try:
            self.send(request)
        except OSError:
            return None, False
        reply = self.receive(time.monotonic() + limits.timeout + GRACE_S)
        if reply is None:
            return None, False
        healthy = reply.pop("healthy")
        if self.memory is not None and self.memory.new_oom_kills():
            reply["status"] = "memory"  # the kernel killed a process of this run at the memory cap
        return ExecResult(**reply), healthy

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Kill the worker and everything it started; the cgroup (when there is one) names every straggler."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for _ in range(50):
            stragglers = self.pids.pids() + (self.memory.pids() if self.memory else [])
            if not stragglers:
                break
            for pid in stragglers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)
        if self.uid is not None and not self.pids.path:  # no cgroup: everything of the worker's own uid goes
            subprocess.run(["/bin/kill", "-KILL", "-1"], env={}, check=False, **user_args(self.uid))
        self.pids.remove()
        if self.memory is not None:
            self.memory.remove()
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.log.close()
        if self.lease is not None:
            self.lease.release()  # only now: every process of this uid is gone


def private_folder(uid: int | None) -> str:
    """The fallback's folder for one worker: each run works in a fresh folder inside it, deleted after it."""
    base = tempfile.mkdtemp(prefix="trainguard-sandbox-")
    if uid is not None:
        os.chown(base, uid, uid)
    return base


class SandboxPool:
    """Run untrusted Python programs with isolation, in parallel across `workers` warm sandboxes.

    >>> with SandboxPool(workers=2) as pool:
    ...     pool.run("print(int(input()) * 2)", stdin="21").stdout
    '42\\n'
    """

    def __init__(self, workers: int = 2, limits: Limits | None = None, isolation: str = "auto") -> None:
        self.limits = limits or Limits()
        self.isolation = detect(isolation)
        self.size = workers
        self.idle: queue.SimpleQueue[Worker | int] = queue.SimpleQueue()
        for slot in range(workers):
            self.idle.put(slot)  # started lazily, on first use
        self.workers: dict[int, Worker] = {}
        self.lock = threading.Lock()
        # bubblewrap's --die-with-parent fires when the *thread* that started it exits, so workers are started
        # and driven only from these threads, which live as long as the pool.
        self.threads = ThreadPoolExecutor(workers, thread_name_prefix="sandbox")
        self.closed = False

    def run(self, source: str, stdin: str = "", **overrides: float | int) -> ExecResult:
        """Run `source` as `__main__` with `stdin`; `overrides` replace fields of the pool's limits."""
        return self.threads.submit(self.run_here, source, stdin, self.with_overrides(overrides)).result()

    def map(self, jobs: Iterable[tuple[str, str]], **overrides: float | int) -> list[ExecResult]:
        """Run (source, stdin) pairs on all workers at once; results in order."""
        limits = self.with_overrides(overrides)
        futures = [self.threads.submit(self.run_here, source, stdin, limits) for source, stdin in jobs]
        return [f.result() for f in futures]

    def with_overrides(self, overrides: dict[str, float | int]) -> Limits:
        return self.limits.model_copy(update=overrides) if overrides else self.limits

    def run_here(self, source: str, stdin: str, limits: Limits) -> ExecResult:
        """On a pool thread: take an idle worker (starting it if needed), run, and replace it if it failed."""
        item = self.idle.get()
        slot = item if isinstance(item, int) else item.slot
        worker: Worker | None = None
        try:
            worker = item if isinstance(item, Worker) else self.start(slot)
            result, healthy = worker.run(source, stdin, limits)
            if result is None or not healthy or not worker.alive():
                self.retire(worker)
                worker = None  # this slot starts afresh on its next run
            if result is None:
                return ExecResult("killed", -9, "", "the sandbox worker died or stopped answering", limits.timeout, 0)
            return result
        finally:
            self.idle.put(worker if worker is not None else slot)

    def start(self, slot: int) -> Worker:
        worker = Worker(slot, self.isolation, self.limits)
        with self.lock:
            self.workers[slot] = worker
        return worker

    def retire(self, worker: Worker) -> None:
        """Close a failed worker and forget it, so that closing the pool never closes it twice (its pid, and so
        its process group, may belong to somebody else by then)."""
        with self.lock:
            self.workers.pop(worker.slot, None)
        worker.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.threads.shutdown(wait=True)
        with self.lock:
            for worker in self.workers.values():
                worker.close()
            self.workers.clear()

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_shared: "SandboxPool | RayPool | None" = None
_config = SandboxSection()


def use(config: SandboxSection) -> None:
    """Where `shared_pool` runs programs from now on (a run's `sandbox` section); a change closes the old pool."""
    global _config
    if config != _config and _shared is not None:
        _shared.close()
    _config = config


def shared_pool(workers: int | None = None) -> "SandboxPool | RayPool":
    """The process-wide pool tasks score with, as `use` set it; `workers` resizes it (closing the old one)."""
    global _shared
    workers = workers or _config.workers
    size = workers * (_config.ray_hosts if _config.backend == "ray" else 1) if workers is not None else None
    if _shared is None or _shared.closed or (size is not None and size != _shared.size):
        if _shared is not None:
            _shared.close()
        if _config.backend == "ray":
            from trainguard.sandbox.ray_pool import RayPool

            _shared = RayPool(_config.ray_hosts, workers or 1, _config.ray_address)
        else:
            _shared = SandboxPool(workers or min(4, os.cpu_count() or 1))
        atexit.register(_shared.close)
    return _shared
