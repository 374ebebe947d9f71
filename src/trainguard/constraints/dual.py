"""The dual side of constrained training: L = L_task + Σ_k λ_k (L_k − c_k), with λ_k ≥ 0 moved by a controller.

The gradient reaches the model through each differentiable surrogate L_k (λ is a constant there), while the
dual update may read a different, non-differentiable measurement of the same constraint (a verifier's
violation rate). Every piece of state is JSON-plain so it fits the checkpoint's state.json.
"""

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field, SerializeAsAny, ValidationInfo, field_validator, model_validator

from trainguard.constraints.controllers import CONTROLLERS, Controller, ControllerConfig
from trainguard.constraints.schedules import PhaseTightening, PhaseTighteningConfig, TargetSchedule
from trainguard.errors import CheckpointError
from trainguard.section import Section


class ConstraintSpec(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Constraint name (a metric key part).")
    target: float = Field(ge=0, allow_inf_nan=False, description="Target c: the constraint holds when L ≤ c.")
    dual_lr: float = Field(0.01, gt=0, description="Dual step size η (ga; the log-λ SGD rate for safe_rlhf).")
    lambda_init: float = Field(0.0, ge=0, description="λ before the first update.")
    lambda_max: float = Field(10.0, gt=0, description="λ is clamped to [0, lambda_max] so one term cannot swamp.")
    controller: SerializeAsAny[ControllerConfig] = Field(
        default_factory=lambda: CONTROLLERS.config_of("ga"),
        description="How λ moves: `ga`, `safe_rlhf` or `pid`, by name or as `{name: pid, kp: ...}`.",
    )

    @field_validator("controller", mode="before")
    @classmethod
    def _controller(cls, value: Any) -> Any:
        return CONTROLLERS.config_of(value)

    @model_validator(mode="after")
    def _init_below_max(self) -> "ConstraintSpec":
        if self.lambda_init > self.lambda_max:
            raise ValueError(f"lambda_init {self.lambda_init} exceeds lambda_max {self.lambda_max}")
        return self


class DualConfig(Section):
    constraints: list[ConstraintSpec] = Field(min_length=1, description="The constraints, each with its λ.")
    schedule: TargetSchedule | None = Field(None, description="Targets by step/epoch; overrides `target` it names.")
    tightening: PhaseTighteningConfig | None = Field(
        None, description="Scale targets down by phase once all constraints hold (exploration → hardening)."
    )
    history: int = Field(1000, ge=1, description="Recent satisfied/violated flags kept per constraint.")

    @field_validator("constraints")
    @classmethod
    def _unique(cls, specs: list[ConstraintSpec]) -> list[ConstraintSpec]:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"constraint names must be unique; got {names}")
        return specs

    @field_validator("schedule")
    @classmethod
    def _known(cls, schedule: TargetSchedule | None, info: ValidationInfo) -> TargetSchedule | None:
        known = {s.name for s in info.data.get("constraints") or []}
        if schedule is not None and known and (unknown := sorted(set(schedule.names) - known)):
            raise ValueError(f"unknown constraint {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        return schedule


class ConstraintTracker:
    """One constraint's record for the metrics store: last value/target/λ, worst overshoot, time above target,
    and oscillation (how often value − target changed sign)."""

    STATS = ("value", "target", "lambda", "satisfied", "overshoot", "steps_above", "oscillation", "updates")

    def __init__(self, history: int = 1000) -> None:
        self.value = self.target = self.lam = 0.0  # meaningful once updates > 0
        self.overshoot = 0.0
        self.steps_above = self.oscillation = self.updates = 0
        self.flags: deque[bool] = deque(maxlen=history)

    @property
    def satisfied(self) -> bool:
        return self.value <= self.target

    def record(self, value: float, target: float, lam: float) -> None:
        was_above = None if not self.updates else not self.satisfied
        self.value, self.target, self.lam = value, target, lam
        above = not self.satisfied
        self.overshoot = max(self.overshoot, value - target)
        self.steps_above += above
        self.oscillation += was_above is not None and above != was_above
        self.updates += 1
        self.flags.append(not above)

    def satisfaction_rate(self, window: int) -> float:
        recent = list(self.flags)[-window:]
        return sum(recent) / len(recent) if recent else math.nan

    def stats(self) -> dict[str, float]:
        """The STATS as floats; only `updates` before the first record (no NaN reaches the store)."""
        if not self.updates:
            return {"updates": 0.0}
        got = {k: float(getattr(self, k)) for k in self.STATS if k not in ("lambda", "satisfied")}
        return {**got, "lambda": self.lam, "satisfied": float(self.satisfied)}

    def state_dict(self) -> dict[str, Any]:
        keys = ("value", "target", "lam", "overshoot", "steps_above", "oscillation", "updates")
        return {**{k: getattr(self, k) for k in keys}, "flags": list(self.flags)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in ("value", "target", "lam", "overshoot"):
            setattr(self, k, float(state[k]))
        for k in ("steps_above", "oscillation", "updates"):
            setattr(self, k, int(state[k]))
        self.flags = deque((bool(f) for f in state["flags"]), maxlen=self.flags.maxlen)


class DualOptimizer:
    """Multipliers for a set of constraints: build the Lagrangian for the primal step, then move each λ."""

    def __init__(
        self,
        constraint_configs: Sequence[ConstraintSpec | Mapping[str, Any]] | DualConfig,
        *,
        schedule: TargetSchedule | Mapping[Any, Any] | Sequence[Any] | None = None,
        tightening: PhaseTighteningConfig | Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(constraint_configs, DualConfig):
            config = constraint_configs
        else:
            specs = [s.model_dump() if isinstance(s, ConstraintSpec) else s for s in constraint_configs]
            config = DualConfig.model_validate({"constraints": specs, "schedule": schedule, "tightening": tightening})
        self.config = config
        self.specs = {s.name: s for s in config.constraints}
        self.controllers: dict[str, Controller] = {
            s.name: CONTROLLERS.get(s.controller.name)(
                s.controller, lr=s.dual_lr, lambda_init=s.lambda_init, lambda_max=s.lambda_max
            )
            for s in config.constraints
        }
        self.trackers = {name: ConstraintTracker(config.history) for name in self.specs}
        self.tightening = PhaseTightening(config.tightening) if config.tightening else None
        self.nan_events = dict.fromkeys(self.specs, 0)
        self.step, self.epoch = 0, 0

    @classmethod
    def from_config(cls, config: DualConfig | Mapping[str, Any]) -> "DualOptimizer":
        return cls(config if isinstance(config, DualConfig) else DualConfig.model_validate(config))

    def set_step(self, step: int, epoch: int = 0) -> None:
        """Tell the schedule where training is; call before `compute_lagrangian` each step."""
        self.step, self.epoch = step, epoch

    @property
    def targets(self) -> dict[str, float]:
        """Targets in force now: the schedule's (or each spec's) times the current phase factor."""
        base = {name: s.target for name, s in self.specs.items()}
        if self.config.schedule is not None:
            base.update(self.config.schedule.targets_at(self.step, self.epoch))
        factor = self.tightening.factor if self.tightening else 1.0
        return {name: t * factor for name, t in base.items()}

    @property
    def phase(self) -> str | None:
        return self.tightening.phase if self.tightening else None

    def get_dual_values(self) -> dict[str, float]:
        return {name: c.lam for name, c in self.controllers.items()}

    def compute_lagrangian(self, task_loss: Any, constraint_losses: Mapping[str, Any]) -> Any:
        """L_task + Σ λ_k (L_k − c_k); λ_k enter as plain floats, so gradients flow only into each L_k."""
        self._check_names(constraint_losses, "constraint_losses")
        targets = self.targets
        total = task_loss
        for name, controller in self.controllers.items():
            total = total + controller.lam * (constraint_losses[name] - targets[name])
        return total

    def update_duals(self, constraint_values: Mapping[str, Any]) -> dict[str, float]:
        """Move each λ from its measured value; a NaN/Inf measurement leaves λ alone and is counted."""
        self._check_names(constraint_values, "constraint_values")
        targets = self.targets
        all_satisfied = True
        for name, controller in self.controllers.items():
            value = float(constraint_values[name])  # host sync when given a tensor
            if not math.isfinite(value):
                self.nan_events[name] += 1
                all_satisfied = False
                continue
            lam = controller.update(value, targets[name])
            self.trackers[name].record(value, targets[name], lam)
            all_satisfied &= value <= targets[name]
        if self.tightening:
            self.tightening.observe(all_satisfied)
        return self.get_dual_values()

    def metrics(self) -> dict[str, float]:
        """Flat `constraint/<name>/<stat>` scalars for the metrics store."""
        out: dict[str, float] = {}
        for name, tracker in self.trackers.items():
            stats = {**tracker.stats(), "lambda": self.controllers[name].lam, "nan_events": self.nan_events[name]}
            out.update({f"constraint/{name}/{k}": float(v) for k, v in stats.items()})
        if self.tightening:
            out["constraint/phase"] = float(self.tightening.index)
        return out

    def satisfaction_rate(self, window: int = 100) -> dict[str, float]:
        """Fraction of the last `window` updates in which each constraint held."""
        return {name: t.satisfaction_rate(window) for name, t in self.trackers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "controllers": {name: c.state_dict() for name, c in self.controllers.items()},
            "trackers": {name: t.state_dict() for name, t in self.trackers.items()},
            "nan_events": dict(self.nan_events),
            "step": self.step,
            "epoch": self.epoch,
            "tightening": self.tightening.state_dict() if self.tightening else None,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if set(state["controllers"]) != set(self.controllers):
            raise CheckpointError(
                f"checkpoint has constraints {sorted(state['controllers'])}; config has {sorted(self.controllers)}"
            )
        for name, c in self.controllers.items():
            c.load_state_dict(state["controllers"][name])
            self.trackers[name].load_state_dict(state["trackers"][name])
        self.nan_events = {name: int(state["nan_events"][name]) for name in self.controllers}
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        if self.tightening and state.get("tightening"):
            self.tightening.load_state_dict(state["tightening"])

    def _check_names(self, given: Mapping[str, Any], what: str) -> None:
        missing, unknown = sorted(set(self.specs) - set(given)), sorted(set(given) - set(self.specs))
        if missing or unknown:
            raise ValueError(
                f"{what}: missing {missing or 'none'}, unknown {unknown or 'none'}; expected {sorted(self.specs)}"
            )
