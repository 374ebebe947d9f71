"""Actions a policy may name, in an open registry: each has a strength (the strongest of a step wins) and,
when it turns a knob, the change it makes. skip_step, rollback and stop reshape the step itself, so the
engine carries them out; knob actions only change saved multipliers that the engine and sources read."""

from dataclasses import dataclass
from typing import Any

from trainguard.engine.state import Knobs
from trainguard.registry import Registry


@dataclass(frozen=True)
class Action:
    name: str
    strength: int
    knob: str | None = None  # the knob it multiplies (read by whoever the knob is for: engine, source, objective)
    factor: float = 1.0  # what it multiplies the knob by...
    factor_key: str | None = None  # ...unless a guard config field holds the factor (lower_lr_factor)

    def apply(self, knobs: Knobs, guard_config: Any) -> str | None:
        """Turn the knob; returns a line for the event log (None for actions the engine carries out)."""
        if self.knob is None:
            return None
        factor = getattr(guard_config, self.factor_key) if self.factor_key else self.factor
        return f"{self.knob} now {knobs.scale(self.knob, factor):.3g}"


ACTIONS: Registry[Action] = Registry("action")


def register_action(action: Action) -> Action:
    return ACTIONS.register(action.name)(action)


for _action in (
    Action("none", 0),
    Action("lower_lr", 1, knob="lr_scale", factor_key="lower_lr_factor"),
    Action("tighten_clip", 1, knob="clip_scale", factor_key="tighten_clip_factor"),
    Action("skip_step", 2),
    Action("rollback", 3),
    Action("stop", 4),
):
    register_action(_action)


def strength(name: str) -> int:
    return ACTIONS.get(name).strength
