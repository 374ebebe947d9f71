"""Alerts: what a detector saw, how bad it is, and what to do about it."""

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["info", "warning", "critical"]
RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class Alert:
    kind: str  # e.g. loss_spike, nonfinite, contamination
    severity: Severity
    step: int
    value: float
    threshold: float
    recommendation: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"[{self.severity}] {self.kind} at step {self.step}: value {self.value:.4g} "
            f"vs threshold {self.threshold:.4g}; {self.recommendation}"
        )


def at_least(severity: str, floor: str) -> bool:
    return RANK[severity] >= RANK[floor]
