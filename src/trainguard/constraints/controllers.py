"""Multiplier controllers: each turns a measured constraint value and its target into λ ≥ 0.

Pure float arithmetic (no tensors), so a controller's state is JSON-plain and its maths is testable by hand.
`ga` is projected gradient ascent on the dual; `safe_rlhf` follows PKU safe-rlhf's PPO-Lag (SGD on log λ
over a window of recent costs); `pid` follows Stooke et al. 2020 ("Responsive Safety in RL by PID Lagrangian
Methods", Alg. 2, as in OmniSafe's `PIDLagrangian`), with the integral also clamped to λ_max (anti-windup).
"""

import math
from collections import deque
from typing import Any, ClassVar, Literal

from pydantic import Field

from trainguard.registry import Registry
from trainguard.section import Section


class ControllerConfig(Section):
    name: str = Field(description="Controller: ga (gradient ascent), safe_rlhf (log λ, windowed cost), pid.")


class Controller:
    """Owns one constraint's multiplier. `update(value, target)` returns the new λ in [0, λ_max]."""

    Config: ClassVar[type[ControllerConfig]] = ControllerConfig

    def __init__(self, config: ControllerConfig, *, lr: float, lambda_init: float, lambda_max: float) -> None:
        self.config = config
        self.lr = lr
        self.lambda_max = lambda_max
        self.lam = min(max(lambda_init, 0.0), lambda_max)

    def update(self, value: float, target: float) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = float(state["lam"])


CONTROLLERS: Registry[type[Controller]] = Registry("controller")


class GradientAscentConfig(ControllerConfig):
    name: Literal["ga"] = Field("ga", description="Projected gradient ascent: λ ← clamp(λ + η(L − c), 0, λ_max).")


@CONTROLLERS.register("ga")
class GradientAscent(Controller):
    """The textbook dual step: pure integral control, so it lags and overshoots when the cost moves fast."""

    Config = GradientAscentConfig

    def update(self, value: float, target: float) -> float:
        self.lam = min(max(self.lam + self.lr * (value - target), 0.0), self.lambda_max)
        return self.lam


class SafeRLHFConfig(ControllerConfig):
    name: Literal["safe_rlhf"] = Field("safe_rlhf", description="SGD on log λ against the windowed mean cost.")
    window: int = Field(
        128, ge=1, description="Recent measurements averaged before each step (safe-rlhf episode_cost_window_size)."
    )
    lambda_floor: float = Field(
        1e-6, gt=0, description="λ used when lambda_init is 0: log λ cannot start at −∞ (safe-rlhf needs λ_init > 0)."
    )


@CONTROLLERS.register("safe_rlhf")
class SafeRLHF(Controller):
    """log λ ← log λ + η·λ·(mean(window) − c), the gradient of safe-rlhf's loss −λ·(mean_cost − c) under SGD.

    λ is multiplicative: it never reaches 0 exactly (it decays like 1/t below target) and clamps only above.
    """

    Config = SafeRLHFConfig
    config: SafeRLHFConfig

    def __init__(self, config: SafeRLHFConfig, *, lr: float, lambda_init: float, lambda_max: float) -> None:
        super().__init__(config, lr=lr, lambda_init=lambda_init, lambda_max=lambda_max)
        self.log_lam = math.log(max(self.lam, config.lambda_floor))
        self.lam = math.exp(self.log_lam)
        self.costs: deque[float] = deque(maxlen=config.window)

    def update(self, value: float, target: float) -> float:
        self.costs.append(value)
        mean_cost = sum(self.costs) / len(self.costs)
        self.log_lam = min(self.log_lam + self.lr * self.lam * (mean_cost - target), math.log(self.lambda_max))
        self.lam = math.exp(self.log_lam)
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "log_lam": self.log_lam, "costs": list(self.costs)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam, self.log_lam = float(state["lam"]), float(state["log_lam"])
        self.costs = deque((float(c) for c in state["costs"]), maxlen=self.config.window)


class PIDConfig(ControllerConfig):
    name: Literal["pid"] = Field("pid", description="PID Lagrangian (Stooke et al. 2020).")
    kp: float = Field(1.0, ge=0, description="Proportional gain on the EMA-smoothed violation L − c.")
    ki: float | None = Field(
        None, ge=0, description="Integral gain; null uses the constraint's dual_lr, so kp = kd = 0 is exactly ga."
    )
    kd: float = Field(0.0, ge=0, description="Derivative gain on the rise of the EMA-smoothed cost (0: PI control).")
    p_ema: float = Field(
        0.95, ge=0, lt=1, description="EMA weight kept on the old proportional term (OmniSafe delta_p_ema_alpha)."
    )
    d_ema: float = Field(
        0.95, ge=0, lt=1, description="EMA weight kept on the old smoothed cost (OmniSafe delta_d_ema_alpha)."
    )
    d_delay: int = Field(10, ge=1, description="The derivative compares the smoothed cost with this many updates ago.")


@CONTROLLERS.register("pid")
class PID(Controller):
    """λ = clamp(Kp·Δ̄ + I + Kd·max(0, C̄_t − C̄_{t−d}), 0, λ_max) with I ← clamp(I + Ki·Δ, 0, λ_max).

    P reacts at once to a violation, D only to a *rising* cost (so a target change gives no kick), and I starts
    at λ_init so λ begins there.
    """

    Config = PIDConfig
    config: PIDConfig

    def __init__(self, config: PIDConfig, *, lr: float, lambda_init: float, lambda_max: float) -> None:
        super().__init__(config, lr=lr, lambda_init=lambda_init, lambda_max=lambda_max)
        self.ki = lr if config.ki is None else config.ki
        self.integral = self.lam
        self.delta_p = 0.0  # EMA of L − c
        self.cost_d = 0.0  # EMA of L
        self.cost_history: deque[float] = deque([0.0], maxlen=config.d_delay)

    def update(self, value: float, target: float) -> float:
        c = self.config
        delta = value - target
        self.integral = min(max(self.integral + self.ki * delta, 0.0), self.lambda_max)
        self.delta_p = c.p_ema * self.delta_p + (1 - c.p_ema) * delta
        self.cost_d = c.d_ema * self.cost_d + (1 - c.d_ema) * value
        rise = max(0.0, self.cost_d - self.cost_history[0])
        self.lam = min(max(c.kp * self.delta_p + self.integral + c.kd * rise, 0.0), self.lambda_max)
        self.cost_history.append(self.cost_d)
        return self.lam

    def state_dict(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "integral": self.integral,
            "delta_p": self.delta_p,
            "cost_d": self.cost_d,
            "cost_history": list(self.cost_history),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam, self.integral = float(state["lam"]), float(state["integral"])
        self.delta_p, self.cost_d = float(state["delta_p"]), float(state["cost_d"])
        self.cost_history = deque((float(c) for c in state["cost_history"]), maxlen=self.config.d_delay)
