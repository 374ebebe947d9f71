"""The seccomp filter every sandboxed program runs under: system calls a stdin→stdout program never needs.

Built here as classic BPF (no libseccomp) and handed to the worker as bytes; its zygote fills in the sandbox's own
pids and installs it in each run's process just before the program starts. Anything not named is allowed; a refused
call fails with an errno, so a program that probes for a feature sees "not permitted" rather than being killed.
"""

import errno
import platform
import struct
from typing import NamedTuple

# name: (x86_64 number, aarch64 number, why a program may not have it)
REFUSED: dict[str, tuple[int, int, str]] = {
    "io_uring_setup": (425, 425, "io_uring: a second, less audited path to every file and socket call"),
    "io_uring_enter": (426, 426, "io_uring"),
    "io_uring_register": (427, 427, "io_uring"),
    "ptrace": (101, 117, "reading or steering another process"),
    "process_vm_readv": (310, 270, "reading another process's memory"),
    "process_vm_writev": (311, 271, "writing another process's memory"),
    "pidfd_getfd": (438, 438, "taking another process's file descriptors"),
    "process_madvise": (440, 440, "acting on another process's memory"),
    "kcmp": (312, 272, "comparing kernel objects of other processes"),
    "pidfd_send_signal": (424, 424, "signals through a /proc folder, around the protected-pid check below"),
    "mount": (165, 40, "changing the file system view"),
    "umount2": (166, 39, "changing the file system view"),
    "pivot_root": (155, 41, "changing the file system view"),
    "chroot": (161, 51, "changing the file system view"),
    "open_tree": (428, 428, "the new mount API"),
    "move_mount": (429, 429, "the new mount API"),
    "fsopen": (430, 430, "the new mount API"),
    "fsconfig": (431, 431, "the new mount API"),
    "fsmount": (432, 432, "the new mount API"),
    "fspick": (433, 433, "the new mount API"),
    "mount_setattr": (442, 442, "the new mount API"),
    "unshare": (272, 97, "new namespaces (nested user namespaces above all)"),
    "setns": (308, 268, "entering other namespaces"),
    "keyctl": (250, 219, "the kernel keyring"),
    "add_key": (248, 217, "the kernel keyring"),
    "request_key": (249, 218, "the kernel keyring"),
    "bpf": (321, 280, "loading eBPF programs"),
    "perf_event_open": (298, 241, "performance counters (a side channel and a large attack surface)"),
    "userfaultfd": (323, 282, "stalling the kernel on page faults (a classic exploit primitive)"),
    "memfd_create": (319, 279, "anonymous files outside /tmp and /dev/shm"),
    "memfd_secret": (447, 447, "memory hidden from the kernel's own accounting tools"),
    "open_by_handle_at": (304, 265, "opening files by handle, around path checks"),
    "name_to_handle_at": (303, 264, "file handles"),
    "fanotify_init": (300, 262, "watching the whole file system"),
    "lookup_dcookie": (212, 18, "kernel profiling"),
    "kexec_load": (246, 104, "loading a new kernel"),
    "kexec_file_load": (320, 294, "loading a new kernel"),
    "init_module": (175, 105, "kernel modules"),
    "finit_module": (313, 273, "kernel modules"),
    "delete_module": (176, 106, "kernel modules"),
    "acct": (163, 89, "process accounting"),
    "swapon": (167, 224, "swap"),
    "swapoff": (168, 225, "swap"),
    "reboot": (169, 142, "rebooting"),
    "quotactl": (179, 60, "disk quotas"),
}
CLONE = (56, 220)  # allowed, but never with a namespace flag or CLONE_PARENT
CLONE3 = 435  # refused with ENOSYS so that glibc falls back to clone, whose flags the filter can read
PRLIMIT64 = (302, 261)  # allowed on the caller itself only: no lowering the limits of the worker's processes
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET, and CLONE_PARENT: a sibling of the run's
# process would be the zygote's child, outside the tree the worker kills after each run
FORBIDDEN_CLONE_FLAGS = 0x7E028000

# Signals (and pidfds) may not reach the sandbox's own processes: a program that kills its zygote costs a worker
# restart, and can take its own exit status with it (a dying zygote may reap the run first). The zygote fills in
# the protected pids: its own, the server's, their process group (negated) and -1 (every process at once).
SIGNALLING = {
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "pidfd_open": (434, 434),
}
PROTECTED_PIDS = 4
UNFILLED = 0xFFFFFFFF  # -1 in every slot until the zygote fills them

ARCHES = {"x86_64": (0, 0xC000003E), "aarch64": (1, 0xC00000B7), "arm64": (1, 0xC00000B7)}
X32_BIT = 0x40000000

# classic BPF opcodes and seccomp return values
LD_ABS, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
ALLOW, KILL_PROCESS, ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
NR, ARCH, ARG0, ARG0_HIGH = 0, 4, 16, 20  # offsets in struct seccomp_data (little-endian arguments)


def supported(machine: str | None = None) -> bool:
    return (machine or platform.machine()) in ARCHES


class Filter(NamedTuple):
    program: bytes  # packed `struct sock_filter` instructions
    pid_slots: list[int]  # byte offsets of the protected pids' 32-bit values, for the zygote to fill in


def filter_program(machine: str | None = None) -> Filter:
    """The filter for `machine` (default: this one)."""
    column, audit_arch = ARCHES[machine or platform.machine()]
    ins = [(LD_ABS, 0, 0, ARCH), (JEQ, 1, 0, audit_arch), (RET, 0, 0, KILL_PROCESS), (LD_ABS, 0, 0, NR)]
    if column == 0:  # x86_64 also answers the x32 ABI under other numbers: refuse all of it
        ins += [(JGE, 0, 1, X32_BIT), (RET, 0, 0, ERRNO | errno.ENOSYS)]
    for numbers in REFUSED.values():
        ins += [(JEQ, 0, 1, numbers[column]), (RET, 0, 0, ERRNO | errno.EPERM)]
    ins += [(JEQ, 0, 1, CLONE3), (RET, 0, 0, ERRNO | errno.ENOSYS)]
    # prlimit64(pid, ...): only pid 0 (the caller itself) passes; both halves of the 64-bit argument are checked
    ins += [(JEQ, 0, 6, PRLIMIT64[column]), (LD_ABS, 0, 0, ARG0), (JEQ, 0, 3, 0), (LD_ABS, 0, 0, ARG0_HIGH)]
    ins += [(JEQ, 0, 1, 0), (RET, 0, 0, ALLOW), (RET, 0, 0, ERRNO | errno.EPERM)]
    ins, pid_slots = signalling_block(ins, column)
    ins += [(JEQ, 0, 3, CLONE[column]), (LD_ABS, 0, 0, ARG0), (JSET, 0, 1, FORBIDDEN_CLONE_FLAGS)]
    ins += [(RET, 0, 0, ERRNO | errno.EPERM), (RET, 0, 0, ALLOW)]
    return Filter(b"".join(struct.pack("<HBBI", *i) for i in ins), pid_slots)


def signalling_block(ins: list[tuple[int, int, int, int]], column: int) -> tuple[list, list[int]]:
    """Append the signalling calls' check: their first argument (a pid; its low 32 bits, as the kernel reads an
    int) may be none of the protected pids. Returns the instructions and the byte offsets of those pids."""
    numbers = [pair[column] for pair in SIGNALLING.values()]
    check = [(LD_ABS, 0, 0, ARG0)]
    check += [(JEQ, PROTECTED_PIDS - i, 0, UNFILLED) for i in range(PROTECTED_PIDS)]
    check += [(RET, 0, 0, ALLOW), (RET, 0, 0, ERRNO | errno.EPERM)]
    last = len(numbers) - 1
    ins = ins + [(JEQ, last - j, len(check) if j == last else 0, nr) for j, nr in enumerate(numbers)]
    slots = [8 * (len(ins) + 1 + i) + 4 for i in range(PROTECTED_PIDS)]  # `k` sits at byte 4 of an instruction
    return ins + check, slots
