"""Policies: a map from alert kinds to action names; the engine applies the strongest action of a step."""

from dataclasses import dataclass, field

from trainguard.guard.actions import strength
from trainguard.guard.alerts import Alert

DEFAULT_POLICIES: dict[str, str] = {
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
    action: str = "none"
    alerts: list[Alert] = field(default_factory=list)  # the alerts that asked for this action

    @property
    def reason(self) -> str:
        return ", ".join(sorted({a.kind for a in self.alerts})) or "none"

    def at_least(self, action: str) -> bool:
        return strength(self.action) >= strength(action)


def decide(alerts: list[Alert], policies: dict[str, str]) -> Decision:
    """The strongest action any warning or critical alert maps to; info alerts are only recorded."""
    decision = Decision()
    for alert in alerts:
        if alert.severity == "info":
            continue
        action = policies.get(alert.kind, "none")
        if strength(action) > strength(decision.action):
            decision = Decision(action, [alert])
        elif action == decision.action and action != "none":
            decision.alerts.append(alert)
    return decision
