"""What one sandboxed run may use, and what it did: the limits in, the result out.

Statuses come from what happened, never from what the program printed: `timeout` is the wall clock passing
`timeout` or the CPU time passing `cpu`; `memory` is the kernel killing a process of the run at its memory
cgroup's cap (without a memory cgroup a program past its address-space cap sees a MemoryError: `error`);
`output_limit` is stdout passing `output_kb`; `killed` is any other signal; `error` a non-zero exit.
"""

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field

from trainguard.section import Section

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "killed"]


class SandboxSection(Section):
    """Where a run's sandboxed programs (bash_command, tool_use, execution tasks) run."""

    backend: Literal["local", "ray"] = Field(
        "local",
        description="local: a pool of sandbox processes here; ray: Ray actors across a cluster's machines, each with "
        "its own local pool (the `ray` extra).",
    )
    workers: int | None = Field(
        None, gt=0, description="Sandboxes per machine (default: min(4, CPU cores)), or per Ray actor (default 1)."
    )
    ray_address: str | None = Field(
        None,
        description="The Ray cluster to join (`auto`, `ray://head:10001`); default: a running local one, else a new "
        "one.",
    )
    ray_hosts: int = Field(1, gt=0, description="Ray actors, spread over the nodes, each with `workers` sandboxes.")


class Limits(Section):
    """Caps applied to every program; a run may tighten or loosen them per call (`limits.model_copy`)."""

    timeout: float = Field(5.0, gt=0, le=600, description="Wall-clock seconds before the run is killed.")
    cpu: float | None = Field(None, gt=0, le=600, description="CPU seconds (RLIMIT_CPU); default: the timeout.")
    memory_mb: int = Field(
        512,
        ge=32,
        le=65536,
        description="Memory cap in MiB over everything the run holds (a memory cgroup: processes, threads, shared "
        "memory, its /tmp and kernel memory); where no memory cgroup can be had, an address-space cap per process.",
    )
    processes: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Processes and threads the program may have at once; default 32, or 1 where there is no memory "
        "cgroup (one process cannot multiply its address-space cap).",
    )
    file_mb: int = Field(16, ge=0, le=4096, description="Largest file the program may write, in MiB.")
    tmp_mb: int = Field(64, ge=1, le=4096, description="Size of each of the run's own /tmp and /dev/shm (bubblewrap).")
    tmp_files: int = Field(4096, ge=16, le=1 << 20, description="Files and folders the run may make in /tmp.")
    open_files: int = Field(256, ge=16, le=65536, description="Descriptors the program may hold open (RLIMIT_NOFILE).")
    output_kb: int = Field(1024, ge=1, le=1 << 20, description="stdout cap in KiB, enforced while reading.")

    def request(self, memory_cgroup: bool) -> dict[str, Any]:
        """The worker's view of these limits (bytes and seconds); with a memory cgroup there is no RLIMIT_AS."""
        return {
            "timeout": self.timeout,
            "cpu": self.cpu or self.timeout,
            "memory": None if memory_cgroup else self.memory_mb << 20,
            "fsize": self.file_mb << 20,
            "nproc": self.processes or (32 if memory_cgroup else 1),
            "nofile": self.open_files,
            "tmp": self.tmp_mb << 20,
            "inodes": self.tmp_files,
            "output": self.output_kb << 10,
        }


@dataclass(frozen=True)
class ExecResult:
    status: Status
    returncode: int
    stdout: str
    stderr: str
    wall: float
    cpu: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
