"""The engine's evaluations between steps that can act: sample checks (guard/generation.py) and the stage's watch
(its promotion gate and probes). A part of `Engine`, kept apart so the step's file reads as the step."""

from typing import Any

from trainguard.engine.outcome import GuardStop


class Reviews:
    """Mixed into `Engine`, whose pieces it reads (pieces, policy, guard, hooks, state) and whose
    train_mode, log, rollback and act it calls."""

    pieces: Any
    policy: Any
    guard: Any
    hooks: Any
    state: Any

    def check_watch(self, done: bool) -> bool:
        """The stage's probes and promotion gate on the live policy; their alerts go to the guard (a rejected
        gate asks for a rollback). True when it rolled back."""
        self.train_mode(False)
        try:
            found = self.pieces.watch.run(self.policy, self.state.global_step, self.state.stage_step, done)
        finally:
            self.train_mode(True)
        self.log(found.metrics)
        for alert in found.alerts:
            self.hooks.alert(alert)
        if found.verdict is not None:
            verdict = found.verdict
            word = "approved" if verdict.approved else "rejected"
            shown = ", ".join(
                f"{name} {s['mean']:.3f} [{s['ci80'][0]:.3f}, {s['ci80'][1]:.3f}]"
                for name, s in verdict.metrics.items()
            )
            self.hooks.event(
                "gate",
                f"promotion gate {word} at step {verdict.step}: {shown}",
                severity="info" if verdict.approved else "warning",
                approved=verdict.approved,
                reasons=verdict.reasons,
            )
        if self.guard is None:
            if found.verdict is not None and not found.verdict.approved:
                raise GuardStop(
                    f"the promotion gate rejected the model at step {self.state.global_step} (no guard to roll back)"
                )
            return False
        self.guard.note(found.alerts)
        decision = self.guard.decide(found.alerts)
        if decision.action == "rollback" and self.rollback(decision, onset=self.state.global_step):
            return True
        self.act(decision)
        return False

    def check_generation(self) -> None:
        self.train_mode(False)  # sample as deployed: no dropout (LoRA's included)
        try:
            metrics, alerts = self.pieces.generation.check(self.policy, self.state.global_step)
        finally:
            self.train_mode(True)
        self.log(metrics)
        for alert in alerts:
            self.hooks.alert(alert)
        if self.guard is not None:
            self.guard.note(alerts)
            self.act(self.guard.decide(alerts))
