"""The in-sandbox server: a warm interpreter whose zygote starts each program in a fresh process of its own.

Standard library only: the host passes confine.py's text and then this file's to `python -I -S -c`, so it runs
with no site packages and no view of trainguard. Forking a warm interpreter costs ~1 ms where starting Python
costs ~20 ms; that is the pool's whole speed-up. Requests and replies are length-prefixed JSON frames on fds 0
and 1.

Two processes, so that no run can see another's bytes. The server (this process; PID 1 inside bubblewrap, so
no signal from a program reaches it) holds every request and reply. The zygote is forked from it before the
first request and never holds one: it only forks (confine.py says what each run's process does). The server
is a child subreaper: every descendant of a run is killed and reaped after it, and a worker whose zygote a
program disturbed reports itself unhealthy, to be replaced.
"""

import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time

with contextlib.suppress(ImportError):  # on the host; inside the sandbox confine.py's text comes before this
    from trainguard.sandbox.confine import PR_SET_DUMPABLE, cpu_seconds, libc, zygote

PR_SET_CHILD_SUBREAPER = 36
CHUNK = 1 << 16
ZYGOTE_S = 5.0  # how long the zygote may take to fork or report: past it, the worker is unhealthy
DRAIN_S = 0.05  # after the program exits, how long output its leftover processes still write is read
# Imported once here so that programs which use them start instantly in the forked child (and the parser is
# warmed up too: some builds spend ~1 ms on a process's first compile).
WARM_MODULES = ("math", "re", "collections", "itertools", "functools", "heapq", "bisect", "string", "random")
WARM_MODULES += ("io", "builtins", "traceback", "atexit", "threading")


class WorkerFault(Exception):
    """The worker, not the program, failed: the host replaces it."""


class ZygoteGone(WorkerFault):
    """The zygote's socket closed: a program killed it (the worker is replaced after this run)."""


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
    write_all(fd, struct.pack(">I", len(data)) + data)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def sealed_memfd(data: bytes) -> int:
    """A read-only in-memory file holding `data`, whole: no full disk can cut it short, no program can edit it."""
    fd = os.memfd_create("run", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    write_all(fd, data)
    if os.fstat(fd).st_size != len(data):
        raise WorkerFault("a memfd came out short")
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


class Zygote:
    """The server's side of the zygote: a socket, a pid, and the health check between runs."""

    def __init__(self, config: dict, server_fds: tuple[int, ...]) -> None:
        mine, theirs = socket.socketpair()
        self.pid = os.fork()
        if self.pid == 0:
            mine.close()
            for fd in server_fds:
                os.close(fd)
            zygote(theirs, config)
        theirs.close()
        self.channel = mine

    def start(self, fds: list[int]) -> tuple[int, int]:
        """Start a run's process with these descriptors: its pid and a pidfd to wait on it."""
        socket.send_fds(self.channel, [b"go"], fds)
        if not select.select([self.channel], [], [], ZYGOTE_S)[0]:
            raise WorkerFault("the zygote stopped answering")
        message, pidfds, _, _ = socket.recv_fds(self.channel, 4, 1)
        if len(message) != 4 or len(pidfds) != 1:
            raise ZygoteGone("the zygote is gone")
        return struct.unpack(">i", message)[0], pidfds[0]

    def exit_of(self) -> tuple[int, float]:
        """The run's exit status and CPU time, once the zygote has reaped it."""
        with contextlib.suppress(OSError):
            os.kill(self.pid, signal.SIGCONT)  # a program may have stopped it
        status, cpu, confined = struct.unpack(">id?", self.receive(struct.calcsize(">id?")))
        if not confined:
            raise WorkerFault("a run's process could not be confined")
        return status, cpu

    def receive(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            if not select.select([self.channel], [], [], ZYGOTE_S)[0]:
                raise WorkerFault("the zygote stopped answering")
            part = self.channel.recv(size - len(data))
            if not part:
                raise ZygoteGone("the zygote is gone")
            data += part
        return data

    def healthy(self) -> bool:
        """Alive and running (a program may have stopped it: it is woken, every time)."""
        try:
            os.kill(self.pid, signal.SIGCONT)
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except OSError:
            return False


def collect(req: dict, pidfd: int, out_r: int, err_r: int, deadline: float) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until the program's process exits or breaks a limit; closed pipes do not end the run."""
    out, err = bytearray(), bytearray()
    open_fds, reason, drain_until = {out_r, err_r}, None, None
    while True:
        now = time.monotonic()
        if drain_until is None and now >= deadline:
            return bytes(out), bytes(err), "timeout"
        if drain_until is not None and (now >= drain_until or not open_fds):
            return bytes(out), bytes(err), reason
        watch = list(open_fds) if drain_until else [*open_fds, pidfd]
        ready = select.select(watch, [], [], (drain_until or deadline) - now)[0]
        if drain_until is not None and not ready:
            return bytes(out), bytes(err), reason
        for fd in ready:
            if fd == pidfd:
                drain_until = time.monotonic() + DRAIN_S
                continue
            data = os.read(fd, CHUNK)
            if not data:
                open_fds.discard(fd)
            elif fd == out_r:
                out += data
                if len(out) > req["output"]:
                    return bytes(out[: req["output"]]), bytes(err), "output_limit"
            elif len(err) < req["output"]:
                err += data[: req["output"] - len(err)]  # noisy stderr is drained, but only its head is kept


def end(pidfd: int) -> None:
    """Kill the run's own process and wait until it is gone: its children are then ours (reparented)."""
    with contextlib.suppress(ProcessLookupError):
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    gone = select.select([pidfd], [], [], ZYGOTE_S)[0]
    os.close(pidfd)
    if not gone:
        raise WorkerFault("a run's process survived SIGKILL")


def kill_all(spare: int) -> dict[int, int]:
    """Kill and reap every process left of this run (every descendant of the server but the zygote); returns
    the exit status of each process the server reaped itself."""
    reaped = reap_orphans()
    if children() == [spare]:
        return reaped  # the fast path: the run's process was the zygote's, and no orphan is left with us
    for _ in range(1000):
        pids = [pid for pid in descendants(os.getpid()) if pid != spare]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        reaped |= reap_orphans()
        if not pids:
            return reaped
        time.sleep(0.001)
    raise WorkerFault("processes of a run survived being killed")


def reap_orphans() -> dict[int, int]:
    """Reap the server's dead children: a run's orphans, reparented to this subreaper, and the run's own
    process if a program killed the zygote (which is then reaped here too, and found gone after the run)."""
    reaped = {}
    with contextlib.suppress(ChildProcessError):
        while (found := os.waitpid(-1, os.WNOHANG))[0]:
            reaped[found[0]] = found[1]
    return reaped


def children() -> list[int]:
    """The server's own children, live or not (one small file, where a /proc scan reads every process)."""
    with open(f"/proc/self/task/{os.getpid()}/children") as f:
        return [int(pid) for pid in f.read().split()]


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


def run(req: dict, config: dict, zygote: Zygote) -> dict:
    stdin_fd = sealed_memfd(req.pop("stdin").encode())
    workdir = None if config["mounts"] else make_workdir(config["base"])
    request_fd = sealed_memfd(json.dumps({**req, "workdir": workdir}).encode())
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    try:
        child, pidfd = zygote.start([stdin_fd, request_fd, out_w, err_w])
    finally:
        for fd in (stdin_fd, request_fd, out_w, err_w):
            os.close(fd)
    try:
        out, err, reason = collect(req, pidfd, out_r, err_r, started + req["timeout"])
    finally:
        end(pidfd)
        reaped = kill_all(spare=zygote.pid)
        for fd in (out_r, err_r):
            os.close(fd)
    status, child_cpu = (reaped[child], 0.0) if child in reaped else exit_status(zygote, child)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if workdir is not None:
        remove_tree(workdir)
        scrub_shared_folders(config)
    cpu = child_cpu + (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    returncode = os.waitstatus_to_exitcode(status)
    return {
        "status": verdict(reason, returncode, cpu >= 0.9 * cpu_seconds(req)),
        "returncode": returncode,
        "stdout": out.decode("utf-8", "replace"),
        "stderr": err.decode("utf-8", "replace"),
        "wall": wall,
        "cpu": cpu,
    }


def exit_status(zygote: Zygote, child: int) -> tuple[int, float]:
    """The run's exit status and CPU time, from the zygote; when a program killed the zygote, the run's process
    is ours to reap (and its CPU time is in our own children's usage). A dying zygote's socket closes before
    the kernel hands its children to us, so wait for the zygote to be gone first."""
    try:
        return zygote.exit_of()
    except ZygoteGone:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(zygote.pid, 0)  # returns once it is dead, and its children reparented
        try:
            return os.waitpid(child, 0)[1], 0.0  # already killed by end(): this does not block
        except ChildProcessError:
            raise WorkerFault("the zygote is gone, and the run's exit status with it") from None


def verdict(reason: str | None, returncode: int, out_of_cpu: bool) -> str:
    """From what happened only: a program that raises SIGXCPU itself is `killed`, not `timeout` (the kernel
    sends it at the CPU limit, which rusage measures up to a scheduler tick short)."""
    if reason:
        return reason
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL) and out_of_cpu:
        return "timeout"
    if returncode < 0:
        return "killed"  # the host makes this `memory` when its memory cgroup counted an out-of-memory kill
    return "ok" if returncode == 0 else "error"


def make_workdir(base: str) -> str:
    path = os.path.join(base, f"run-{time.monotonic_ns()}")
    os.mkdir(path, 0o700)
    return path


def scrub_shared_folders(config: dict) -> None:
    """Fallback with a uid of its own: delete whatever that uid left in the world-writable folders."""
    if not config["own_uid"]:
        return  # a shared uid: the caller's own files would be indistinguishable
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == os.getuid() and entry.path != config["base"]:
                        remove_tree(entry.path)


def remove_tree(path: str) -> None:
    """Delete `path` whatever the program did to its permissions (it is ours, so we may restore them)."""
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
        return
    os.chmod(path, 0o700)
    for entry in os.listdir(path):
        remove_tree(os.path.join(path, entry))
    os.rmdir(path)


def main() -> None:
    config = json.loads(sys.argv[-1])
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as PID 1, a signal with no handler never arrives from inside
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    for name in WARM_MODULES:
        __import__(name)
    compile("def f(x: int) -> list:\n    return [x for _ in range(x)]\n", "warm.py", "exec")  # the parser's first
    zygote = Zygote(config, (requests, replies))  # before the first request: the zygote never holds one
    write_frame(replies, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            req = read_frame(requests)
        except EOFError:
            return
        try:
            reply = run(req, config, zygote) | {"healthy": zygote.healthy()}
        except Exception as exc:  # a worker fault is reported, not fatal: the host replaces the worker
            reply = {"status": "killed", "returncode": -1, "stdout": "", "stderr": f"sandbox worker: {exc!r}"}
            reply |= {"wall": 0.0, "cpu": 0.0, "healthy": False}
        write_frame(replies, reply)


if __name__ == "__main__":
    main()
