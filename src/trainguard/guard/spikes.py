"""Spike detectors: read what a bdh model's `spiking` plug-in logs each step. The firing-rate detector runs after
each applied step ("after" phase); the membrane detector runs before the update ("pre"), so the step whose loss
went NaN also names the guide's remedy. Keys are fixed; a stage without spiking neurons has none: both stay silent."""

import math
import re
from typing import Any

from pydantic import Field, model_validator

from trainguard.guard.alerts import Alert
from trainguard.guard.detectors import DETECTORS, Detector, DetectorConfig

FIRING = re.compile(r"^spike/(L\d+)/firing$")  # mean spike trace of one layer's neurons (models/spiking.py)
MEMBRANE_STD = re.compile(r"^spike/(L\d+)/std$")  # std of one layer's last membrane potential


class SpikeRateConfig(DetectorConfig):
    max_rate: float = Field(
        0.5, gt=0, le=1, description="A layer firing above this warns: raise the sparsity weight (guide: 0.5)."
    )
    min_rate: float = Field(
        0.01, ge=0, lt=1, description="A layer firing below this warns: silent neurons (guide: 0.01)."
    )
    cooldown: int = Field(100, ge=1, description="Steps before the same layer alerts again on the same side.")

    @model_validator(mode="after")
    def _band(self) -> "SpikeRateConfig":
        if self.min_rate >= self.max_rate:
            raise ValueError(f"min_rate {self.min_rate} must be below max_rate {self.max_rate}")
        return self


@DETECTORS.register("spike_rate")
class SpikeRateDetector(Detector):
    """A bdh layer's firing rate above 0.5 (raise the sparsity weight) or below 0.01 (silent neurons)."""

    name = "spike_rate"
    phase = "after"
    Config = SpikeRateConfig
    config: SpikeRateConfig

    def __init__(self, config: SpikeRateConfig) -> None:
        super().__init__(config)
        self.last_alert: dict[str, int] = {}  # "<layer>/<high|low>" -> step of its last alert

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c, alerts = self.config, []
        for key, rate in metrics.items():
            if not (m := FIRING.match(key)) or not math.isfinite(rate):
                continue  # a non-finite rate is the non-finite detector's
            layer = m.group(1)
            if rate > c.max_rate:
                side, bound = "high", c.max_rate
                why = f"{layer} fires too often: increase the sparsity weight (model.spiking.sparsity_weight)"
            elif rate < c.min_rate:
                side, bound = "low", c.min_rate
                why = (
                    f"{layer}'s neurons are silent: lower the threshold (model.spiking.threshold) or raise tau_mem "
                    "(model.spiking.tau_mem)"
                )
            else:
                continue
            slot = f"{layer}/{side}"
            if step - self.last_alert.get(slot, -(10**9)) < c.cooldown:
                continue
            self.last_alert[slot] = step
            alerts.append(Alert("spike_rate", "warning", step, rate, bound, why, {"layer": layer, "side": side}))
        return alerts

    def state_dict(self) -> dict[str, Any]:
        return {"last_alert": dict(self.last_alert)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_alert = dict(state["last_alert"])


class MembraneConfig(DetectorConfig):
    max_std: float = Field(
        1e6,
        gt=0,
        description="A layer's membrane potential std above this (or non-finite) warns: the Euler step overshoots "
        "(tau_mem below 0.5 grows it every simulation step); a healthy bdh-small run stays under 10.",
    )


@DETECTORS.register("spike_membrane")
class MembraneDetector(Detector):
    """A bdh layer's membrane potential blown up (std above 1e6 or non-finite): raise tau_mem, the NaN remedy.

    Warns beside the non-finite detector, whose critical alert decides what happens to the step."""

    name = "spike_membrane"
    Config = MembraneConfig
    config: MembraneConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        blown = {
            m.group(1): std
            for key, std in metrics.items()
            if (m := MEMBRANE_STD.match(key)) and not (math.isfinite(std) and std <= self.config.max_std)
        }
        if not blown:
            return []
        value = next(iter(blown.values()))
        why = (
            "the membrane potential overshoots: raise tau_mem (model.spiking.tau_mem; below 0.5 the Euler step "
            "grows it every simulation step) or lower spike_steps"
        )
        return [Alert("membrane_overshoot", "warning", step, value, self.config.max_std, why, {"layers": list(blown)})]
