"""What one sandboxed run may use, and what it did: the limits in, the result out."""

from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field

from trainguard.section import Section

Status = Literal["ok", "error", "timeout", "memory", "output_limit", "killed"]


class Limits(Section):
    """Caps applied to every program; a run may tighten or loosen them per call (`limits.model_copy`)."""

    timeout: float = Field(5.0, gt=0, le=600, description="Wall-clock seconds before the run is killed.")
    cpu: float | None = Field(None, gt=0, le=600, description="CPU seconds (RLIMIT_CPU); default: the timeout.")
    memory_mb: int = Field(512, ge=32, le=65536, description="Address-space cap in MiB (RLIMIT_AS).")
    processes: int = Field(32, ge=1, le=4096, description="Processes and threads the program may have at once.")
    file_mb: int = Field(16, ge=0, le=4096, description="Largest file the program may write, in MiB.")
    tmp_mb: int = Field(64, ge=1, le=4096, description="Size of the private /tmp folder (bubblewrap only).")
    output_kb: int = Field(1024, ge=1, le=1 << 20, description="stdout cap in KiB, enforced while reading.")

    def request(self) -> dict[str, Any]:
        """The worker's view of these limits (bytes and seconds)."""
        return {
            "timeout": self.timeout,
            "cpu": self.cpu or self.timeout,
            "memory": self.memory_mb << 20,
            "fsize": self.file_mb << 20,
            "nproc": self.processes,
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
