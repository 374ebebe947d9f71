"""A run's own process, forked by the zygote: confine it, then run the program as `python main.py` would.

Standard library only, like the server (`worker.py`): the host passes both files' text to `python -I -S -c`,
this one first. The zygote is forked from the server before the first request and never holds one; each run's
process gets its program and stdin through sealed memfds, makes itself the kernel's first choice at the memory
cap, mounts its own /tmp in a mount namespace of its own, drops every capability, sets its rlimits and installs
the seccomp filter, and only then runs the program.
"""

import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import struct
import sys
import traceback

PR_SET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 4, 38, 22, 47
SECCOMP_MODE_FILTER, PR_CAP_AMBIENT_CLEAR_ALL, CAPABILITY_V3 = 2, 4, 0x20080522
CLONE_NEWNS, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 0x20000, 2, 4, 0x1000, 0x4000, 1 << 18
libc = ctypes.CDLL(None, use_errno=True)


def check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def private_mounts(req: dict) -> str:
    """A fresh /tmp (the working folder, also seen at /dev/shm) for this run alone, in a mount namespace of its
    own: it is gone with the run's last process, inode numbers and all."""
    check(libc.unshare(CLONE_NEWNS), "unshare")
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate")
    options = f"size={req['tmp']},nr_inodes={req['inodes']},mode=700".encode()
    check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, options), "mount /tmp")
    if os.path.isdir("/dev/shm"):  # the same tmpfs again: one size cap, and one superblock less to make per run
        check(libc.mount(b"/tmp", b"/dev/shm", None, MS_BIND, None), "mount /dev/shm")
    return "/tmp"


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


class Privileges:
    """What dropping privileges needs, built once in the zygote so that each run only makes system calls."""

    def __init__(self, seccomp_hex: str, pid_slots: list[int]) -> None:
        self.filter = bytes(protect(bytearray.fromhex(seccomp_hex), pid_slots))
        self.program = SockFprog(len(self.filter) // 8, self.filter)
        self.header, self.no_caps = CapHeader(CAPABILITY_V3, 0), (ctypes.c_uint32 * 6)()

    def drop(self) -> None:
        """No capability left (none can come back: no_new_privs), then the seccomp filter."""
        check(libc.capset(ctypes.byref(self.header), self.no_caps), "capset")
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        if self.filter:
            check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self.program)), "seccomp")


def protect(program: bytearray, pid_slots: list[int]) -> bytearray:
    """Fill in the pids no run may signal: the zygote (we are it), the server, their process group, everyone."""
    protected = (os.getpid(), os.getppid(), -os.getpgid(0), -1)
    for offset, pid in zip(pid_slots, protected[: len(pid_slots)], strict=True):  # no slots: no filter
        struct.pack_into("<I", program, offset, pid & 0xFFFFFFFF)
    return program


def prefer_as_oom_victim() -> None:
    """Runs are born in the zygote's memory cgroup: at its cap the kernel must kill the run, never the zygote.
    (Our /proc files are root's while we are not dumpable, so for this one write we are.)"""
    libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    finally:
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def cpu_seconds(req: dict) -> int:
    """The RLIMIT_CPU soft limit: whole seconds, at least one."""
    return max(1, int(req["cpu"] + 0.999))


def set_limits(req: dict) -> None:
    cpu = cpu_seconds(req)
    limits = {
        resource.RLIMIT_CPU: (cpu, cpu + 1),
        resource.RLIMIT_FSIZE: (req["fsize"], req["fsize"]),
        resource.RLIMIT_NPROC: (req["nproc"], req["nproc"]),
        resource.RLIMIT_NOFILE: (req["nofile"], req["nofile"]),
        resource.RLIMIT_CORE: (0, 0),
    }
    if req["memory"] is not None:
        limits[resource.RLIMIT_AS] = (req["memory"], req["memory"])
    for kind, value in limits.items():
        resource.setrlimit(kind, value)


def run_child(config: dict, privileges: Privileges, fds: list[int], confined_w: int) -> None:
    """In the run's process: confine it, then run the program as `python main.py` would. One byte on
    `confined_w` tells the zygote that every confinement step held; a failed step is the worker's fault."""
    stdin_fd, request_fd, out_w, err_w = fds
    code = 1
    try:
        os.dup2(err_w, 2)  # a failing step's traceback reaches the caller
        os.setsid()
        req = json.loads(os.read(request_fd, os.fstat(request_fd).st_size))
        prefer_as_oom_victim()
        workdir = private_mounts(req) if config["mounts"] else req["workdir"]
        os.chdir(workdir)
        for fd, target in ((stdin_fd, 0), (out_w, 1), (err_w, 2)):
            os.dup2(fd, target)
        os.closerange(3, confined_w)
        os.closerange(confined_w + 1, 1 << 16)
        if workdir != "/tmp":
            os.environ.update(HOME=workdir, TMPDIR=workdir)  # (with mounts, the zygote has set them already)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the server's PID-1 setting, undone
        set_limits(req)
        privileges.drop()
        os.write(confined_w, b"1")
        os.close(confined_w)
        code = execute(req["source"])
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code & 0xFF)


def execute(source: str) -> int:
    """The program as `__main__`, then what the interpreter does at exit: join threads, run atexit, flush."""
    import atexit
    import builtins
    import io
    import threading
    import traceback

    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="replace")
    sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
    sys.argv = ["main.py"]
    namespace = {"__name__": "__main__", "__file__": "main.py", "__builtins__": builtins}
    code = 0
    try:
        exec(compile(source, "main.py", "exec"), namespace)
    except SystemExit as stop:
        code = exit_code(stop)
    except BaseException as exc:
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)  # hide this frame
        code = 1
    with contextlib.suppress(BaseException):
        threading._shutdown()  # type: ignore[attr-defined]  (non-daemon threads finish, as at interpreter exit)
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()  # prints a failing handler's traceback itself
    for stream, failed in ((sys.stdout, 120), (sys.stderr, 0)):
        try:
            stream.flush()
        except BaseException:
            code = code or failed
    return code


def exit_code(stop: SystemExit) -> int:
    if stop.code is None or isinstance(stop.code, int):
        return stop.code or 0
    print(stop.code, file=sys.stderr)
    return 1


def zygote(channel: socket.socket, config: dict) -> None:
    """Fork one run's process per request; report its pid, then its exit status and CPU time."""
    privileges = Privileges(config["seccomp"], config["pid_slots"])
    if config["cgroup_fd"] is not None:
        os.write(config["cgroup_fd"], b"0")  # every run is then born in the memory cgroup: no move per run
        os.close(config["cgroup_fd"])
    os.environ.clear()
    if config["mounts"]:
        os.environ.update(HOME="/tmp", TMPDIR="/tmp")
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, 16, 4)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        confined_r, confined_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            channel.close()
            os.close(confined_r)
            run_child(config, privileges, fds, confined_w)
        for fd in (*fds, confined_w):
            os.close(fd)
        pidfd = os.pidfd_open(pid)  # before reaping it: the server can then wait on it even if it exits at once
        socket.send_fds(channel, [struct.pack(">i", pid)], [pidfd])
        os.close(pidfd)
        _, status, usage = os.wait4(pid, 0)
        confined = os.read(confined_r, 1) == b"1"
        os.close(confined_r)
        channel.sendall(struct.pack(">id?", status, usage.ru_utime + usage.ru_stime, confined))
