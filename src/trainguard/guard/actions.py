"""Actions a policy may name, in an open registry: each has a strength (the strongest of a step wins) and,
when it turns knobs, the changes it makes. skip_step, rollback and stop reshape the step itself, so the
engine carries them out; knob actions only change saved values that the engine and sources read. An action
may do both: skip_and_cool is as strong as skip_step (the engine skips the update) and also turns knobs."""

from dataclasses import dataclass
from typing import Any, Literal

from trainguard.engine.state import Knobs
from trainguard.registry import Registry

#: A number, or the name of a guard config field that holds it (so `guard.lower_lr_factor` tunes lower_lr).
Amount = float | str


def resolve(amount: Amount | None, guard_config: Any) -> float | None:
    return getattr(guard_config, amount) if isinstance(amount, str) else amount


@dataclass(frozen=True)
class KnobChange:
    """One knob turned: multiplied by (`scale`), increased by (`add`) or reset to (`set`) an amount, then
    clamped to [low, high] so repeated alerts ramp a knob up to a cap rather than without end."""

    knob: str
    op: Literal["scale", "add", "set"] = "scale"
    amount: Amount = 1.0
    low: Amount | None = None
    high: Amount | None = None

    def apply(self, knobs: Knobs, guard_config: Any) -> float:
        amount = resolve(self.amount, guard_config)
        assert amount is not None
        value = {"scale": knobs[self.knob] * amount, "add": knobs[self.knob] + amount, "set": amount}[self.op]
        if (low := resolve(self.low, guard_config)) is not None:
            value = max(value, low)
        if (high := resolve(self.high, guard_config)) is not None:
            value = min(value, high)
        return knobs.set(self.knob, value)


@dataclass(frozen=True)
class Action:
    name: str
    strength: int
    knob: str | None = None  # shorthand for one multiplicative change of this knob (read by whoever it is for)
    factor: float = 1.0  # what the shorthand multiplies the knob by...
    factor_key: str | None = None  # ...unless a guard config field holds the factor
    changes: tuple[KnobChange, ...] = ()  # any number of knob changes, applied in order

    @property
    def knob_changes(self) -> tuple[KnobChange, ...]:
        single = (KnobChange(self.knob, "scale", self.factor_key or self.factor),) if self.knob else ()
        return single + self.changes

    def apply(self, knobs: Knobs, guard_config: Any) -> str | None:
        """Turn the knobs; returns a line for the event log with each new value (None when no knob turns)."""
        changes = self.knob_changes
        if not changes:
            return None
        return ", ".join(f"{c.knob} now {c.apply(knobs, guard_config):.3g}" for c in changes)


ACTIONS: Registry[Action] = Registry("action")


def register_action(action: Action) -> Action:
    return ACTIONS.register(action.name)(action)


LOWER_LR = KnobChange("lr_scale", "scale", "lower_lr_factor")
TIGHTEN_CLIP = KnobChange("clip_scale", "scale", "tighten_clip_factor")

for _action in (
    Action("none", 0),
    Action("lower_lr", 1, changes=(LOWER_LR,)),
    Action("tighten_clip", 1, changes=(TIGHTEN_CLIP,)),
    # RL: a collapsed policy samples hotter and is paid less for answers its group shares; undone on recovery.
    Action(
        "diversify",
        1,
        changes=(
            KnobChange("temperature_scale", "scale", "diversify_temperature_factor", high="max_temperature_scale"),
            KnobChange("diversity", "add", "diversity_step", low=0.0, high="max_diversity"),
        ),
    ),
    Action(
        "undiversify", 1, changes=(KnobChange("temperature_scale", "set", 1.0), KnobChange("diversity", "set", 0.0))
    ),
    Action("skip_step", 2),
    # On a gradient explosion, skip the update and also lower the LR and tighten clipping (the failure write-up).
    Action("skip_and_cool", 2, changes=(LOWER_LR, TIGHTEN_CLIP)),
    Action("rollback", 3),
    Action("stop", 4),
):
    register_action(_action)


def strength(name: str) -> int:
    return ACTIONS.get(name).strength
