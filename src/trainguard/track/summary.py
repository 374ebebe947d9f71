"""Per-stage summaries read back from the store, so a resumed run summarises the whole stage, not the
steps this process happened to run: averages over the stage, and the guard's interventions counted."""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from trainguard.track.store import read_metrics, read_table


@dataclass
class StageSummary:
    name: str
    step_times: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)  # tokens/s of each step
    losses: list[float] = field(default_factory=list)
    eval_loss: float = math.nan  # the last evaluation
    eval_ppl: float = math.nan
    rollbacks: int = 0
    skipped: int = 0
    actions: dict[str, int] = field(default_factory=dict)  # the guard's actions taken, by name
    last: dict[str, float] = field(default_factory=dict)  # the last logged value of each metric

    @property
    def steps(self) -> int:
        return len(self.step_times)

    @property
    def seconds(self) -> float:
        return sum(self.step_times)

    @property
    def tokens_per_s(self) -> float:
        """Tokens over training time, the whole stage."""
        if not self.seconds or len(self.rates) != len(self.step_times):
            return math.nan
        return sum(r * t for r, t in zip(self.rates, self.step_times, strict=True)) / self.seconds

    @property
    def eval_text(self) -> str:
        """The stage's last held-out number in its own terms: accuracy for RL and reward stages, else loss."""
        for key, label in (("eval/accuracy", "acc"), ("reward/eval_accuracy", "pair acc")):
            if key in self.last:
                return f"{label} {self.last[key]:.1%}"
        return f"{self.eval_loss:.4f}" if math.isfinite(self.eval_loss) else "-"

    @property
    def train_loss(self) -> float:
        """Mean over the stage's last 10% of steps (at least one): the level it ended at, less noisy."""
        tail = self.losses[-max(1, len(self.losses) // 10) :]
        return sum(tail) / len(tail) if tail else math.nan


def stage_summaries(db: Path) -> list[StageSummary]:
    out: dict[str, StageSummary] = {}
    for _, stage, key, value, _ in read_metrics(db):
        s = out.setdefault(stage, StageSummary(stage))
        s.last[key] = value
        if key == "perf/step_time_s":
            s.step_times.append(value)
        elif key == "perf/tokens_per_s":
            s.rates.append(value)
        elif key == "loss/train":
            s.losses.append(value)
        elif key == "loss/eval":
            s.eval_loss = value
        elif key == "loss/eval_ppl":
            s.eval_ppl = value
        elif key == "guard/skipped":
            s.skipped += 1
    for event in read_table(db, "events"):
        action = json.loads(event["data"] or "{}").get("action") if event["kind"] == "action" else None
        if action is None or event["stage"] not in out:
            continue
        s = out[event["stage"]]
        done = action != "rollback" or event["message"].startswith("rollback to")  # not a refused one
        if done:
            s.actions[action] = s.actions.get(action, 0) + 1
            s.rollbacks += action == "rollback"
    return list(out.values())
