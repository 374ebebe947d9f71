"""Step detectors: each reads the scalars the engine already synced for the step, keeps a small window,
and emits alerts. A value that raised an alert is kept out of the window, so a spike cannot widen the
band that would catch the next one."""

import math
from collections import deque
from typing import Any, ClassVar

from pydantic import Field

from trainguard.guard.alerts import Alert
from trainguard.guard.window import RollingWindow
from trainguard.registry import Registry
from trainguard.section import Section


class DetectorConfig(Section):
    enabled: bool = Field(True, description="Run this detector.")


class LossMetricConfig(DetectorConfig):
    metric: str = Field(
        "loss/train",
        description="Metric key watched: `loss/train` (every term), `loss/task` under constraints, a reward in RL.",
    )


class Detector:
    """Reads `metrics` (the step's synced scalars) and returns alerts; state survives checkpoints."""

    name: ClassVar[str]
    Config: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: "pre": decided before the update is applied (can skip it); "post": reads post-update stats.
    phase: ClassVar[str] = "pre"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


DETECTORS: Registry[type[Detector]] = Registry("detector")


class WindowedDetector(Detector):
    """A detector over a rolling window of its own recent values (its config has `window`)."""

    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.window = RollingWindow(config.window)  # type: ignore[attr-defined]

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window.load_state_dict(state["window"])


@DETECTORS.register("nonfinite")
class NonFiniteDetector(Detector):
    """NaN or Inf in the loss or any gradient: critical, every step."""

    name = "nonfinite"

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        loss, gnorm = metrics["loss/train"], metrics["grad/norm"]
        bad = metrics.get("grad/nan_count", 0) + metrics.get("grad/inf_count", 0)
        if math.isfinite(loss) and math.isfinite(gnorm) and bad == 0:
            return []
        value = loss if not math.isfinite(loss) else gnorm
        return [
            Alert(
                "nonfinite",
                "critical",
                step,
                value,
                0.0,
                "roll back to the last healthy checkpoint",
                {"nan_count": metrics.get("grad/nan_count", 0), "inf_count": metrics.get("grad/inf_count", 0)},
            )
        ]


class GradNormConfig(DetectorConfig):
    metric: str = Field("grad/norm", description="Metric key watched (the pre-clip global grad norm).")
    explode_abs: float = Field(1000.0, gt=0, description="grad_norm above this is an explosion (critical).")
    sigmas: float = Field(6.0, gt=0, description="grad_norm above mean + sigmas*std of the window explodes.")
    window: int = Field(128, ge=4, description="Previous steps in the rolling window.")
    min_ratio: float = Field(
        10.0,
        ge=1,
        description="...and above this multiple of the window mean: healthy small-batch runs have heavy-tailed "
        "grad norms (isolated steps at 4-5x the mean), which the 6σ band alone flags.",
    )
    vanish: float = Field(1e-8, ge=0, description="grad_norm below this is vanishing.")


@DETECTORS.register("grad_norm")
class GradNormDetector(WindowedDetector):
    """Explosion (absolute, or mean + 6σ of the previous 128 steps once half full) and vanishing."""

    name = "grad_norm"
    Config = GradNormConfig
    config: GradNormConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        g = metrics[c.metric]
        if not math.isfinite(g):
            return []  # the non-finite detector owns this
        alert = None
        if g > c.explode_abs:
            alert = Alert("grad_explosion", "critical", step, g, c.explode_abs, "skip the update")
        elif len(self.window) >= c.window // 2 and g > (
            limit := max(self.window.upper(c.sigmas), c.min_ratio * self.window.mean)
        ):
            alert = Alert("grad_explosion", "warning", step, g, limit, "skip the update")
        elif g < c.vanish and metrics.get("loss/train") != 0.0:  # a zero loss has nothing to teach (RL: no spread)
            alert = Alert("grad_vanishing", "warning", step, g, c.vanish, "check for dead units or a zero LR")
        if alert is None:
            self.window.push(g)
            return []
        return [alert]


class LossSpikeConfig(LossMetricConfig):
    sigmas: float = Field(6.0, gt=0, description="Loss above mean + sigmas*std of the window is a spike.")
    window: int = Field(128, ge=4, description="Previous steps in the rolling window (armed when half full).")


@DETECTORS.register("loss_spike")
class LossSpikeDetector(WindowedDetector):
    """Loss above mean + 6σ of the previous 128 steps (armed once half full)."""

    name = "loss_spike"
    Config = LossSpikeConfig
    config: LossSpikeConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        loss = metrics[c.metric]
        if not math.isfinite(loss):
            return []
        if len(self.window) >= c.window // 2 and loss > (limit := self.window.upper(c.sigmas)):
            return [Alert("loss_spike", "warning", step, loss, limit, "roll back and skip the batch window")]
        self.window.push(loss)
        return []


class DivergenceConfig(LossMetricConfig):
    max_loss: float = Field(10.0, gt=0, description="Loss above this has diverged.")
    factor: float = Field(2.0, gt=1, description="Smoothed loss above factor x its minimum (after warm-up) diverges.")
    min_gap: float = Field(
        0.1, ge=0, description="...and at least this far above it, so tiny losses near 0 don't trip."
    )
    warmup: int = Field(100, ge=0, description="Steps before the minimum is tracked.")
    patience: int = Field(5, ge=1, description="Consecutive steps above the bound before alerting.")
    smoothing: float = Field(0.9, ge=0, lt=1, description="EMA factor of the smoothed loss.")


@DETECTORS.register("divergence")
class DivergenceDetector(Detector):
    """Loss above 10, or the smoothed loss above 2x its post-warm-up minimum for several steps."""

    name = "divergence"
    Config = DivergenceConfig
    config: DivergenceConfig

    def __init__(self, config: DivergenceConfig) -> None:
        super().__init__(config)
        self.seen, self.ema, self.min_ema, self.over = 0, None, None, 0

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        loss = metrics[c.metric]
        if not math.isfinite(loss):
            return []
        if loss > c.max_loss:
            return [Alert("divergence", "critical", step, loss, c.max_loss, "roll back and lower the LR")]
        self.seen += 1
        self.ema = loss if self.ema is None else c.smoothing * self.ema + (1 - c.smoothing) * loss
        if self.seen <= c.warmup:
            return []
        if self.min_ema is None or self.ema < self.min_ema:
            self.min_ema = self.ema
        bound = max(c.factor * self.min_ema, self.min_ema + c.min_gap)
        self.over = self.over + 1 if self.ema > bound else 0
        if self.over >= c.patience:
            self.over = 0
            return [Alert("divergence", "critical", step, self.ema, bound, "roll back and lower the LR")]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen, "ema": self.ema, "min_ema": self.min_ema, "over": self.over}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen, self.ema, self.min_ema, self.over = state["seen"], state["ema"], state["min_ema"], state["over"]


class PlateauConfig(LossMetricConfig):
    window: int = Field(500, ge=2, description="Steps without improvement of the smoothed loss.")
    rel_tol: float = Field(0.01, ge=0, description="Improvement smaller than this share of the best does not count.")
    smoothing: float = Field(0.98, ge=0, lt=1, description="EMA factor of the smoothed loss.")


@DETECTORS.register("plateau")
class PlateauDetector(Detector):
    """No improvement of the smoothed loss over a window (info)."""

    name = "plateau"
    Config = PlateauConfig
    config: PlateauConfig

    def __init__(self, config: PlateauConfig) -> None:
        super().__init__(config)
        self.ema, self.best, self.since = None, None, 0

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        loss = metrics[c.metric]
        if not math.isfinite(loss):
            return []
        self.ema = loss if self.ema is None else c.smoothing * self.ema + (1 - c.smoothing) * loss
        if self.best is None or self.ema < self.best * (1 - c.rel_tol):
            self.best, self.since = self.ema, 0
            return []
        self.since += 1
        if self.since >= c.window:
            self.since = 0
            return [Alert("plateau", "info", step, self.ema, self.best, "lower the LR or change the data mix")]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "best": self.best, "since": self.since}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ema, self.best, self.since = state["ema"], state["best"], state["since"]


class OscillationConfig(LossMetricConfig):
    window: int = Field(100, ge=4, description="Loss differences whose sign changes are counted.")
    max_rate: float = Field(
        0.9, gt=0, le=1, description="Sign-change rate above this oscillates (i.i.d. noise gives ~2/3)."
    )


@DETECTORS.register("oscillation")
class OscillationDetector(Detector):
    """Loss differences that flip sign almost every step."""

    name = "oscillation"
    Config = OscillationConfig
    config: OscillationConfig

    def __init__(self, config: OscillationConfig) -> None:
        super().__init__(config)
        self.last: float | None = None
        self.last_sign = 0
        self.changes: deque[int] = deque(maxlen=config.window)

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        loss = metrics[c.metric]
        if not math.isfinite(loss):
            return []
        if self.last is not None:
            sign = (loss > self.last) - (loss < self.last)
            if sign and self.last_sign:
                self.changes.append(int(sign != self.last_sign))
            self.last_sign = sign or self.last_sign
        self.last = loss
        if len(self.changes) == c.window and (rate := sum(self.changes) / c.window) > c.max_rate:
            self.changes.clear()
            return [Alert("oscillation", "warning", step, rate, c.max_rate, "lower the LR")]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last, "last_sign": self.last_sign, "changes": list(self.changes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last, self.last_sign = state["last"], state["last_sign"]
        self.changes = deque(state["changes"], maxlen=self.config.window)


class UpdateRatioConfig(DetectorConfig):
    target: float = Field(1e-3, gt=0, description="The healthy |Δw|/|w| per step.")
    info_factor: float = Field(10.0, gt=1, description="Info when the ratio is this many times off the target.")
    warn_factor: float = Field(100.0, gt=1, description="Warning when this many times above the target.")
    jump_factor: float = Field(
        5.0, gt=1, description="Warning when the ratio jumps this many times above its own recent mean (an LR spike)."
    )
    window: int = Field(32, ge=4, description="Recent ratios the jump is measured against (armed when full).")
    cooldown: int = Field(100, ge=0, description="Steps before an info alert of this kind repeats.")


@DETECTORS.register("update_ratio")
class UpdateRatioDetector(WindowedDetector):
    """The update ratio |Δw|/|w| far from 1e-3, or jumping above its recent mean (read one step late)."""

    name = "update_ratio"
    phase = "post"
    Config = UpdateRatioConfig
    config: UpdateRatioConfig

    def __init__(self, config: UpdateRatioConfig) -> None:
        super().__init__(config)
        self.last_info = -(10**9)

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        r, c = metrics.get("weights/update_ratio", 0.0), self.config
        if not (r > 0 and math.isfinite(r)):
            return []  # a skipped update, or a non-finite one the non-finite detector reports
        off = max(r / c.target, c.target / r)
        if r >= c.target * c.warn_factor:  # too small a step is slow, not broken: it stays info below
            return [Alert("update_ratio", "warning", step, r, c.target * c.warn_factor, "check the LR")]
        if len(self.window) == c.window and r > (bound := c.jump_factor * self.window.mean):
            return [Alert("update_ratio", "warning", step, r, bound, "the step size jumped: check the LR")]
        self.window.push(r)
        if off >= c.info_factor and step - self.last_info >= c.cooldown:
            self.last_info = step
            bound = c.target * c.info_factor if r > c.target else c.target / c.info_factor
            return [Alert("update_ratio", "info", step, r, bound, "the LR may be far from its sweet spot")]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {"last_info": self.last_info, **super().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_info = state["last_info"]
        super().load_state_dict(state)
