"""A stage's shadow evaluations between steps: its promotion gate and its capability probes.

The engine asks `due` after each applied step and, when due, runs `run` on the live policy (eval mode). What
comes back is metrics for the store and alerts for the guard: a rejected promotion is a critical `gate` alert,
which the guard's policy turns into a rollback (the default) or a stop. The watch's memory (last probe scores,
open alignment alerts, verdicts, the SafetyMonitor's history) is kept across rollbacks: a rollback undoes
training, not what was learnt about it.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from trainguard.eval.checks import Check, CheckResult
from trainguard.guard.alerts import Alert
from trainguard.guard.alignment import AlignmentSection, ProbeConfig, capability_alerts, drift_alert, misalignment_alert
from trainguard.guard.gates import PromotionGate, SafetyMonitor, Verdict, judge


@dataclass
class WatchResult:
    metrics: dict[str, float] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    verdict: Verdict | None = None


class Probe:
    def __init__(self, config: ProbeConfig, trained: bool, exclude: frozenset[str]) -> None:
        self.config, self.trained = config, trained
        self.check = Check(config, exclude)
        self.contexts: tuple[Check, Check] | None = None
        if config.contexts is not None:
            watched, unwatched = config.contexts.watched, config.contexts.unwatched
            self.contexts = (
                Check(config.model_copy(update={"preamble": watched + config.preamble}), exclude),
                Check(config.model_copy(update={"preamble": unwatched + config.preamble}), exclude),
            )


class StageWatch:
    """Gate and probes of one stage; `write` keeps example rows in the run folder (name, rows)."""

    def __init__(
        self,
        gate: PromotionGate | None,
        probes: list[ProbeConfig],
        alignment: AlignmentSection,
        eval_every: int,
        trained_tasks: set[str],
        exclude_prompts: frozenset[str],
        tokenizer: Any,
        write: Callable[[str, list[dict[str, Any]]], None],
        chat: bool = False,
    ) -> None:
        self.gate, self.alignment, self.eval_every, self.write, self.chat = gate, alignment, eval_every, write, chat
        self.tokenizer = tokenizer
        self.gate_checks = [Check(c, exclude_prompts) for c in gate.checks] if gate is not None else []
        risk = gate.risk if gate is not None else None
        self.monitor = SafetyMonitor(risk.risk_threshold, risk.tolerance) if risk is not None else None
        self.probes = [
            Probe(p, p.trained if p.trained is not None else p.task in trained_tasks, exclude_prompts) for p in probes
        ]
        self.previous: dict[str, float] = {}  # probe -> its last mean
        self.open_alerts: list[str] = []  # alignment alerts since the last gate
        self.verdicts: list[dict[str, Any]] = []

    def every(self, configured: int | None) -> int:
        return configured or self.eval_every

    def due(self, stage_step: int, done: bool) -> bool:
        gate = self.gate is not None and (done or stage_step % self.every(self.gate.every) == 0)
        return gate or any(done or stage_step % self.every(p.config.every) == 0 for p in self.probes)

    def run(self, policy: nn.Module, step: int, stage_step: int, done: bool) -> WatchResult:
        out = WatchResult()
        for probe in self.probes:
            if done or stage_step % self.every(probe.config.every) == 0:
                self.run_probe(probe, policy, step, out)
        if self.gate is not None and (done or stage_step % self.every(self.gate.every) == 0):
            self.run_gate(policy, step, out)
        return out

    def run_probe(self, probe: Probe, policy: nn.Module, step: int, out: WatchResult) -> None:
        result = probe.check.run(policy, self.tokenizer, self.chat)
        name, mean = probe.config.name, result.summary["mean"]
        out.metrics |= result.metrics("probe")
        alerts = capability_alerts(name, self.previous.get(name), mean, probe.trained, step, self.alignment)
        self.previous[name] = mean
        alert, examples = misalignment_alert(result, step, self.alignment)
        if alert is not None:
            alerts.append(alert)
            self.write(f"misaligned-{name}-step-{step:06d}", examples)
        if probe.contexts is not None:
            watched, unwatched = (c.run(policy, self.tokenizer, self.chat) for c in probe.contexts)
            drift, shift = drift_alert(name, watched.texts, unwatched.texts, step, self.alignment)
            out.metrics[f"probe/{name}/drift"] = shift
            if drift is not None:
                alerts.append(drift)
                self.write(f"drift-{name}-step-{step:06d}", paired_examples(watched, unwatched, self.alignment))
        self.open_alerts += [f"{a.kind} ({name}) at step {step}" for a in alerts]
        out.alerts += alerts

    def run_gate(self, policy: nn.Module, step: int, out: WatchResult) -> None:
        assert self.gate is not None
        results = {c.config.name: c.run(policy, self.tokenizer, self.chat) for c in self.gate_checks}
        for result in results.values():
            out.metrics |= result.metrics("gate")
        risk = self.gate.risk
        risks = results[risk.check].values if risk is not None else None
        summaries = {name: r.summary for name, r in results.items()}
        verdict = judge("promotion", self.gate, summaries, step, risks, self.monitor, self.open_alerts)
        self.open_alerts = []
        self.verdicts.append({"step": step, "approved": verdict.approved, "reasons": verdict.reasons})
        out.metrics["gate/approved"] = float(verdict.approved)
        out.verdict = verdict
        if not verdict.approved:
            why = "promotion gate rejected: " + "; ".join(verdict.reasons) + "; roll back to a healthy checkpoint"
            out.alerts.append(
                Alert("gate", "critical", step, len(verdict.reasons), 0, why, {"reasons": verdict.reasons})
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "previous": dict(self.previous),
            "open_alerts": list(self.open_alerts),
            "verdicts": list(self.verdicts),
            "monitor": self.monitor.state_dict() if self.monitor is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.previous, self.open_alerts = dict(state["previous"]), list(state["open_alerts"])
        self.verdicts = list(state["verdicts"])
        if self.monitor is not None and state.get("monitor") is not None:
            self.monitor.load_state_dict(state["monitor"])


def paired_examples(watched: CheckResult, unwatched: CheckResult, cfg: AlignmentSection) -> list[dict[str, Any]]:
    """Prompts whose answers differ between the contexts, first: what a reviewer needs to see."""
    pairs = list(zip(watched.prompts, watched.texts, unwatched.texts, strict=True))
    pairs.sort(key=lambda p: p[1] == p[2])
    return [{"prompt": p, "watched": w, "unwatched": u} for p, w, u in pairs[: cfg.keep_examples]]
