"""Constraint detectors: read what the constraints plug-in reports after each applied step ("after" phase)."""

import math
import re
from typing import Any

from pydantic import Field

from trainguard.guard.alerts import Alert
from trainguard.guard.detectors import DETECTORS, Detector, DetectorConfig

SATISFACTION = re.compile(r"^constraint/(.+)/satisfaction$")


class ConstraintSatisfactionConfig(DetectorConfig):
    min_rate: float = Field(0.95, gt=0, le=1, description="Satisfaction rate over the window below this alerts.")
    min_updates: int = Field(50, ge=1, description="λ updates before the rate is judged (the window fills).")
    cooldown: int = Field(50, ge=1, description="Steps before the same constraint alerts again.")


@DETECTORS.register("constraint_satisfaction")
class ConstraintSatisfactionDetector(Detector):
    """A constraint held in fewer than 95% of its recent updates (warning), or its measured value was NaN
    (λ is then left as it was: warning, so a broken measure is seen, not silently ignored)."""

    name = "constraint_satisfaction"
    phase = "after"
    Config = ConstraintSatisfactionConfig
    config: ConstraintSatisfactionConfig

    def __init__(self, config: ConstraintSatisfactionConfig) -> None:
        super().__init__(config)
        self.last_alert: dict[str, int] = {}
        self.nan_seen: dict[str, float] = {}

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c, alerts = self.config, []
        for key, rate in metrics.items():
            if not (m := SATISFACTION.match(key)) or not math.isfinite(rate):
                continue
            name = m.group(1)
            nan = metrics.get(f"constraint/{name}/nan_events", 0.0)
            if nan > self.nan_seen.get(name, 0.0):
                why = "the constraint's measure returned NaN; its λ was left unchanged"
                alerts.append(Alert("constraint_nan", "warning", step, nan, 0.0, why, {"constraint": name}))
            self.nan_seen[name] = nan
            updates = metrics.get(f"constraint/{name}/updates", 0.0)
            recent = step - self.last_alert.get(name, -(10**9)) < c.cooldown
            if updates >= c.min_updates and rate < c.min_rate and not recent:
                self.last_alert[name] = step
                why = "the constraint does not hold: raise lambda_max or the dual rate, or loosen the target"
                data = {"constraint": name}
                alerts.append(Alert("constraint_unsatisfied", "warning", step, rate, c.min_rate, why, data))
        return alerts

    def state_dict(self) -> dict[str, Any]:
        return {"last_alert": dict(self.last_alert), "nan_seen": dict(self.nan_seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_alert, self.nan_seen = dict(state["last_alert"]), dict(state["nan_seen"])
