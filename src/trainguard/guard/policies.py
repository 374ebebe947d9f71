"""Policies: a map from alert kinds to action names; the engine applies the strongest action of a step."""

import math
from dataclasses import dataclass, field

from trainguard import ranks
from trainguard.guard.actions import ACTIONS, strength
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
    # RL (rl_detectors.py): a hacked or blown-up policy is rolled back; a collapsed one is made to explore.
    "reward_hacking": "rollback",
    "entropy_collapse": "diversify",
    "zero_spread": "none",  # all wrong at a high temperature is no collapse: diversify would add heat
    "diversity_recovered": "undiversify",
    "kl_blowup": "rollback",
    "reward_failures": "none",
    "constraint_unsatisfied": "none",
    "constraint_nan": "none",
    # Gates and probes (engine/watch.py): a rejected promotion rolls back; alignment alerts are for people to read
    # and fail the gates that block on them.
    "gate": "rollback",
    "capability_spike": "none",
    "unexpected_capability": "none",
    "objective_misalignment": "none",
    "behaviour_drift": "none",
    "forgetting": "none",
    # Spiking models (guard/spikes.py): advice on the sparsity weight and tau_mem; a NaN they cause is `nonfinite`.
    "spike_rate": "none",
    "membrane_overshoot": "none",
}

#: The strongest action an info alert may ask for: a knob turn (undiversify on recovery), never a skip,
#: rollback or stop, which only a warning justifies.
INFO_MAX_STRENGTH = 1


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
    """The strongest action the alerts map to. Info alerts may only turn knobs (strength <= 1); anything
    stronger they map to is recorded, not acted on. At equal strength a warning's action beats an info's."""
    decision, rank = Decision(), (0, False)
    for alert in alerts:
        action = policies.get(alert.kind, "none")
        info = alert.severity == "info"
        if action == "none" or (info and strength(action) > INFO_MAX_STRENGTH):
            continue
        this = (strength(action), not info)
        if this > rank:
            decision, rank = Decision(action, [alert]), this
        elif action == decision.action:
            decision.alerts.append(alert)
    return decision


def agree(decision: Decision) -> Decision:
    """With many processes, every rank takes the strongest action any rank decided (ties: by name), so all
    skip, roll back or stop together; a rank that decided less says why it acts. One process: unchanged."""
    if not ranks.active():
        return decision
    names = ACTIONS.names()
    code = ranks.max_int(strength(decision.action) * len(names) + names.index(decision.action))
    action = names[code % len(names)]
    if action == decision.action:
        return decision
    why = f"another process decided {action}; every process acts alike"
    return Decision(action, [Alert("other_rank", "warning", 0, math.nan, 0.0, why)])
