"""Policies: a map from alert kinds to actions; the engine applies the strongest action of a step."""

from dataclasses import dataclass, field
from typing import Literal

from trainguard.guard.alerts import Alert

Action = Literal["none", "lower_lr", "skip_step", "rollback", "stop"]
STRENGTH: dict[str, int] = {"none": 0, "lower_lr": 1, "skip_step": 2, "rollback": 3, "stop": 4}

DEFAULT_POLICIES: dict[str, Action] = {
    "nonfinite": "rollback",
    "grad_explosion": "skip_step",
    "grad_vanishing": "none",
    "loss_spike": "rollback",
    "divergence": "rollback",
    "plateau": "none",
    "oscillation": "lower_lr",
    "update_ratio": "rollback",
    "activations": "rollback",
    "contamination": "skip_step",
    "repetition": "skip_step",
    "duplicates": "none",
    "imbalance": "none",
    "mode_collapse": "none",
    "drift": "none",
}


@dataclass
class Decision:
    action: Action = "none"
    alerts: list[Alert] = field(default_factory=list)  # the alerts that asked for this action

    @property
    def reason(self) -> str:
        return ", ".join(sorted({a.kind for a in self.alerts})) or "none"


def decide(alerts: list[Alert], policies: dict[str, Action]) -> Decision:
    """The strongest action any warning or critical alert maps to; info alerts are only recorded."""
    decision = Decision()
    for alert in alerts:
        if alert.severity == "info":
            continue
        action = policies.get(alert.kind, "none")
        if STRENGTH[action] > STRENGTH[decision.action]:
            decision = Decision(action, [alert])
        elif action == decision.action and action != "none":
            decision.alerts.append(alert)
    return decision
