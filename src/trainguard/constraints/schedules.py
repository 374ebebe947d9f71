"""Constraint targets that change over training: a schedule keyed by step or epoch, and phase tightening
(exploration → refinement → hardening) that scales every target down once all are met for a while."""

import bisect
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from trainguard.section import Section

Target = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TargetSchedule(Section):
    """Targets by step or epoch, e.g. `{0: {grammar: 0.5}, 25: {grammar: 0.2}}` or `[[0, {...}], [25, {...}]]`.

    A bare mapping or list is accepted in place of the whole section. Keys must be strictly increasing as
    written: JSON and YAML keep only the last of duplicate keys, so the list form is the one that can show
    a duplicate, and both forms refuse unsorted keys instead of sorting them silently.
    """

    points: list[tuple[int, dict[str, Target]]] = Field(
        description="(start, {constraint: target}) pairs, starts strictly increasing from 0; every point names "
        "the same constraints."
    )
    unit: Literal["step", "epoch"] = Field("step", description="Whether starts count optimizer steps or epochs.")
    interpolate: Literal["constant", "linear"] = Field(
        "constant", description="constant: hold each point's targets until the next; linear: ramp between points."
    )

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        if isinstance(data, list) or (isinstance(data, dict) and "points" not in data and _numeric_keys(data)):
            return {"points": data}
        return data

    @field_validator("points", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = list(value.items())
        if not isinstance(value, list):
            return value
        starts = [p[0] if isinstance(p, list | tuple) and p else None for p in value]
        try:
            starts = [int(s) for s in starts]  # YAML/JSON may give "25"
        except (TypeError, ValueError):
            raise ValueError(f"schedule keys must be integers (steps or epochs); got {starts}") from None
        if any(b <= a for a, b in pairwise(starts)):
            raise ValueError(f"schedule keys must be strictly increasing (sorted, no duplicates); got {starts}")
        if starts and starts[0] != 0:
            raise ValueError(f"the schedule must start at 0; got first key {starts[0]}")
        return [(s, p[1]) for s, p in zip(starts, value, strict=True)]

    @field_validator("points")
    @classmethod
    def _same_names(cls, points: list[tuple[int, dict[str, float]]]) -> list[tuple[int, dict[str, float]]]:
        if not points:
            raise ValueError("the schedule needs at least one point")
        names = set(points[0][1])
        for start, targets in points:
            if set(targets) != names:
                raise ValueError(f"key {start} names {sorted(targets)}; every key must name {sorted(names)}")
        return points

    @property
    def names(self) -> list[str]:
        return sorted(self.points[0][1])

    def targets_at(self, step: int, epoch: int = 0) -> dict[str, float]:
        """The targets in force at this step (or epoch, per `unit`)."""
        t = step if self.unit == "step" else epoch
        starts = [s for s, _ in self.points]
        i = max(bisect.bisect_right(starts, t) - 1, 0)
        here = self.points[i][1]
        if self.interpolate == "constant" or i + 1 == len(self.points):
            return dict(here)
        (a, lo), (b, hi) = self.points[i], self.points[i + 1]
        w = (t - a) / (b - a)
        return {k: lo[k] + w * (hi[k] - lo[k]) for k in lo}


def _numeric_keys(data: dict[Any, Any]) -> bool:
    return bool(data) and all(isinstance(k, int) or (isinstance(k, str) and k.strip().isdigit()) for k in data)


class PhaseTighteningConfig(Section):
    phases: list[str] = Field(
        ["exploration", "refinement", "hardening"], min_length=1, description="Phase names, in order."
    )
    factors: list[Target] = Field(
        [1.0, 0.5, 0.25], description="Multiplier on every target in each phase (same length as phases)."
    )
    patience: int = Field(
        50, ge=1, description="Consecutive dual updates with every constraint satisfied before the next phase."
    )

    @field_validator("factors")
    @classmethod
    def _one_per_phase(cls, factors: list[float], info: ValidationInfo) -> list[float]:
        phases = info.data.get("phases")
        if phases is not None and len(factors) != len(phases):
            raise ValueError(f"need one factor per phase ({len(phases)}); got {len(factors)}")
        return factors


class PhaseTightening:
    """Advances one phase after `patience` consecutive all-satisfied updates; never goes back."""

    def __init__(self, config: PhaseTighteningConfig) -> None:
        self.config = config
        self.index = 0
        self.streak = 0

    @property
    def phase(self) -> str:
        return self.config.phases[self.index]

    @property
    def factor(self) -> float:
        return self.config.factors[self.index]

    def observe(self, all_satisfied: bool) -> bool:
        """Count one dual update; True when it moved to the next phase."""
        self.streak = self.streak + 1 if all_satisfied else 0
        if self.streak >= self.config.patience and self.index + 1 < len(self.config.phases):
            self.index += 1
            self.streak = 0
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"index": self.index, "streak": self.streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.index, self.streak = int(state["index"]), int(state["streak"])
