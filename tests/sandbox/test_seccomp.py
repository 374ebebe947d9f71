"""The seccomp filter, run through a small classic-BPF interpreter: every decision it makes, on both CPUs."""

import errno
import re
import struct
from pathlib import Path

import pytest

from trainguard.sandbox import seccomp

README = Path(__file__).parents[2] / "README.md"


def decide(program: bytes, nr: int, arch: int, args: tuple[int, ...] = (0,) * 6) -> int:
    """What the kernel would return for this system call (the subset of BPF the filter uses)."""
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    ins = [struct.unpack("<HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]
    pc, acc = 0, 0
    while True:
        code, jt, jf, k = ins[pc]
        if code == seccomp.LD_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == seccomp.RET:
            return k
        elif code in (seccomp.JEQ, seccomp.JGE, seccomp.JSET):
            hit = {seccomp.JEQ: acc == k, seccomp.JGE: acc >= k, seccomp.JSET: bool(acc & k)}[code]
            pc += jt if hit else jf
        pc += 1


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_refused_call_fails_with_eperm_and_everything_else_passes(machine):
    column, arch = seccomp.ARCHES[machine]
    program = seccomp.filter_program(machine).program
    eperm, allow = seccomp.ERRNO | errno.EPERM, seccomp.ALLOW
    for name, numbers in seccomp.REFUSED.items():
        assert decide(program, numbers[column], arch) == eperm, name
    refused = {numbers[column] for numbers in seccomp.REFUSED.values()} | {seccomp.CLONE3}
    assert all(decide(program, nr, arch) == allow for nr in range(460) if nr not in refused | {seccomp.CLONE[column]})
    assert decide(program, seccomp.CLONE3, arch) == seccomp.ERRNO | errno.ENOSYS  # glibc then falls back to clone
    assert decide(program, 0, arch ^ 1) == seccomp.KILL_PROCESS  # another ABI's numbers mean other calls


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_clone_and_prlimit_are_judged_by_their_arguments(machine):
    column, arch = seccomp.ARCHES[machine]
    program = seccomp.filter_program(machine).program
    clone, prlimit = seccomp.CLONE[column], seccomp.PRLIMIT64[column]
    fork_flags, thread_flags = 17, 0x3D0F00  # SIGCHLD; glibc's pthread_create flags
    assert decide(program, clone, arch, (fork_flags, 0, 0, 0, 0, 0)) == seccomp.ALLOW
    assert decide(program, clone, arch, (thread_flags, 0, 0, 0, 0, 0)) == seccomp.ALLOW
    for flag in (0x10000000, 0x20000, 0x20000000, 0x40000000, 0x8000):  # NEWUSER, NEWNS, NEWPID, NEWNET, PARENT
        assert decide(program, clone, arch, (fork_flags | flag, 0, 0, 0, 0, 0)) == seccomp.ERRNO | errno.EPERM
    assert decide(program, prlimit, arch, (0, 7, 0, 0, 0, 0)) == seccomp.ALLOW
    assert decide(program, prlimit, arch, (1, 7, 0, 0, 0, 0)) == seccomp.ERRNO | errno.EPERM
    assert decide(program, prlimit, arch, (1 << 32, 7, 0, 0, 0, 0)) == seccomp.ERRNO | errno.EPERM


def test_x32_calls_are_refused_on_x86_64():
    program = seccomp.filter_program("x86_64").program
    assert decide(program, seccomp.X32_BIT | 1, seccomp.ARCHES["x86_64"][1]) == seccomp.ERRNO | errno.ENOSYS


def test_the_readme_lists_every_refused_call():
    listed = set(re.findall(r"`(\w+)`", README.read_text().split("### Refused system calls")[1].split("###")[0]))
    assert set(seccomp.REFUSED) <= listed


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_signals_never_reach_the_sandboxs_own_processes(machine):
    column, arch = seccomp.ARCHES[machine]
    rules = seccomp.filter_program(machine)
    eperm, allow = seccomp.ERRNO | errno.EPERM, seccomp.ALLOW
    kill, tgkill, pidfd_open = (seccomp.SIGNALLING[name][column] for name in ("kill", "tgkill", "pidfd_open"))
    assert decide(rules.program, kill, arch, (2**64 - 1, 9, 0, 0, 0, 0)) == eperm  # unfilled: kill(-1) already
    program = bytearray(rules.program)
    for offset, pid in zip(rules.pid_slots, (500, 400, -400, -1), strict=True):
        struct.pack_into("<I", program, offset, pid & 0xFFFFFFFF)
    for pid in (500, 400, -400, -1):
        as_register = pid & 0xFFFFFFFF if pid > 0 else (pid & 0xFFFFFFFF) | (0xFFFFFFFF << 32)  # sign-extended
        for nr in seccomp.SIGNALLING.values():
            assert decide(bytes(program), nr[column], arch, (as_register, 9, 9, 0, 0, 0)) == eperm, (pid, nr)
    for pid in (0, 501, 399, 1):  # the run itself, its own children, anything else it may reach
        assert decide(bytes(program), kill, arch, (pid, 9, 0, 0, 0, 0)) == allow
        assert decide(bytes(program), tgkill, arch, (pid, pid, 9, 0, 0, 0)) == allow
        assert decide(bytes(program), pidfd_open, arch, (pid, 0, 0, 0, 0, 0)) == allow
    after = decide(bytes(program), seccomp.CLONE[column], arch, (17 | 0x10000000, 0, 0, 0, 0, 0))
    assert after == eperm  # the clone check after the block still reads its own argument
