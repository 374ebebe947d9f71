"""The in-sandbox fork server: a warm interpreter that forks one child per program.

Standard library only: the host passes this file's text to `python -I -S -c`, so it runs with no site
packages and no view of trainguard. Forking a warm interpreter costs ~1 ms where starting Python costs ~20 ms;
that is the pool's whole speed-up. Requests and replies are length-prefixed JSON frames on fds 0 and 1.

The worker is non-dumpable (its children cannot ptrace it or open its /proc fds) and a child subreaper, so
every descendant, a setsid one too, is reparented to it and killed and reaped after each run. Inside
bubblewrap it is PID 1 of its own PID namespace: signals from its children cannot kill it, and kill(-1)
reaches every other process of the sandbox.
"""

import builtins
import contextlib
import ctypes
import io
import json
import os
import resource
import select
import signal
import struct
import sys
import tempfile
import time
import traceback

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CHUNK = 1 << 16
# Imported once here so that programs which use them start instantly in the forked child.
WARM_MODULES = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "random")


def read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        part = os.read(fd, n - len(buf))
        if not part:
            raise EOFError
        buf += part
    return buf


def read_frame(fd: int) -> dict:
    (size,) = struct.unpack(">I", read_exact(fd, 4))
    return json.loads(read_exact(fd, size))


def write_frame(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def run_child(req: dict, stdin_fd: int, out_w: int, err_w: int, workdir: str) -> None:
    """In the forked child: drop to the run's limits, then execute the program as `__main__`."""
    code = 1
    try:
        os.setsid()
        os.chdir(workdir)
        os.dup2(stdin_fd, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.closerange(3, 1 << 16)
        cpu = max(1, int(req["cpu"] + 0.999))
        limits = {
            resource.RLIMIT_CPU: (cpu, cpu + 1),
            resource.RLIMIT_AS: (req["memory"], req["memory"]),
            resource.RLIMIT_FSIZE: (req["fsize"], req["fsize"]),
            resource.RLIMIT_NPROC: (req["nproc"], req["nproc"]),
            resource.RLIMIT_CORE: (0, 0),
        }
        for kind, value in limits.items():
            resource.setrlimit(kind, value)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
        sys.argv = ["main.py"]
        namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": builtins}
        try:
            exec(compile(req["source"], "main.py", "exec"), namespace)
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, int | None):
                print(stop.code, file=sys.stderr)
        except BaseException as exc:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # hide this frame
            code = 1
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                code = code or 1
    finally:
        os._exit(code & 0xFF)


def kill_all(child: int, everyone: bool) -> None:
    """Kill every process left of this run. `everyone` (PID 1 or a dedicated uid): kill(-1) spares only us."""
    if everyone:
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        return
    for _ in range(100):  # subreaper: orphans are our children, so our descendants are everything left
        pids = descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


def descendants(root: int) -> list[int]:
    """Live (non-zombie) descendants of `root`, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read()
                state, parent = stat[stat.rindex(b")") + 2 :].split()[:2]
                if state != b"Z":
                    parents[int(entry)] = int(parent)
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], {root}
    while frontier:
        nxt = {pid for pid, parent in parents.items() if parent in frontier}
        found.extend(nxt)
        frontier = nxt
    return found


def reap(block: bool = False) -> dict[int, int]:
    statuses = {}
    while True:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return statuses
        if pid == 0:
            return statuses
        statuses[pid] = status


def collect(req: dict, child: int, out_r: int, err_r: int, started: float) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until the child exits or breaks a limit; the stdout cap holds while reading."""
    out, err = bytearray(), bytearray()
    reason = None
    pidfd = os.pidfd_open(child)
    open_fds = {out_r, err_r}
    deadline = started + req["timeout"]
    exited = False
    while open_fds:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            reason = "timeout"
            break
        watch = list(open_fds) if exited else [*open_fds, pidfd]
        ready, _, _ = select.select(watch, [], [], remaining if not exited else 0)
        if exited and not ready:
            break  # the child is gone and nothing is buffered: descendants holding the pipes are killed next
        if pidfd in ready:
            exited = True
        for fd in ready:
            if fd == pidfd:
                continue
            data = os.read(fd, CHUNK)
            if not data:
                open_fds.discard(fd)
            elif fd == out_r:
                out += data
                if len(out) > req["output"]:
                    reason = "output_limit"
                    del out[req["output"] :]
                    break
            elif len(err) < req["output"]:
                err += data[: req["output"] - len(err)]  # noisy stderr is drained, but only its head is kept
        if reason:
            break
    os.close(pidfd)
    return bytes(out), bytes(err), reason


def run(req: dict, everyone: bool) -> dict:
    workdir = tempfile.mkdtemp(prefix="run-", dir="/tmp")
    stdin_fd = os.open(os.path.join(workdir, ".stdin"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(stdin_fd, req["stdin"].encode())
    os.lseek(stdin_fd, 0, 0)
    os.unlink(os.path.join(workdir, ".stdin"))
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    child = os.fork()
    if child == 0:
        run_child(req, stdin_fd, out_w, err_w, workdir)
    for fd in (stdin_fd, out_w, err_w):
        os.close(fd)
    out, err, reason = collect(req, child, out_r, err_r, started)
    kill_all(child, everyone)
    statuses = reap(block=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for fd in (out_r, err_r):
        os.close(fd)
    remove_tree(workdir)
    status = statuses.get(child, 0)
    returncode = os.waitstatus_to_exitcode(status)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "status": verdict(reason, returncode, err, cpu >= req["cpu"]),
        "returncode": returncode,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "wall": wall,
        "cpu": cpu,
    }


def verdict(reason: str | None, returncode: int, err: bytes, out_of_cpu: bool) -> str:
    if reason:
        return reason
    if returncode == -signal.SIGXCPU or (returncode == -signal.SIGKILL and out_of_cpu):
        return "timeout"
    if returncode == 1 and err.rstrip().rsplit(b"\n", 1)[-1].startswith(b"MemoryError"):
        return "memory"
    if returncode < 0:
        return "killed"
    return "ok" if returncode == 0 else "error"


def remove_tree(path: str) -> None:
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files:
            os.unlink(os.path.join(root, name))
        for name in dirs:
            full = os.path.join(root, name)
            if os.path.islink(full):
                os.unlink(full)
            else:
                os.rmdir(full)
    os.rmdir(path)


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for name in WARM_MODULES:
        __import__(name)
    everyone = os.getpid() == 1 or sys.argv[-1] == "dedicated-uid"
    write_frame(replies, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            req = read_frame(requests)
        except EOFError:
            return
        try:
            reply = run(req, everyone)
        except Exception as exc:  # a worker fault is reported, not fatal: the host decides
            reply = {"status": "killed", "returncode": -1, "stdout": "", "stderr": f"sandbox worker: {exc!r}"}
            reply |= {"wall": 0.0, "cpu": 0.0}
        write_frame(replies, reply)


if __name__ == "__main__":
    main()
