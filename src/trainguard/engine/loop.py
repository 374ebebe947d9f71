"""The engine: runs one stage's optimizer steps, with the guard's decisions, eval and checkpoints between.

`train_step` is the whole update, top to bottom: batches -> data checks -> loss -> backward -> clip ->
(one host sync) -> detectors -> policy -> step or not. Post-update stats (weight norm, |Δw|/|w|) are read
at the next step's sync, so the loop never waits on the device twice per step.
"""

import math
import time
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.config import StageSection
from trainguard.data.sources import SFTSource
from trainguard.engine.checkpoint import Checkpoint, Checkpointer
from trainguard.engine.evaluation import eval_loss
from trainguard.engine.outcome import GuardStop, Hooks, StageResult
from trainguard.engine.schedule import lr_at
from trainguard.engine.state import TrainState, capture_rng, restore_rng
from trainguard.engine.stats import abs_max, global_norm, nonfinite_counts, update_norm
from trainguard.guard.alerts import Alert
from trainguard.guard.faults import FaultInjector
from trainguard.guard.guard import Guard
from trainguard.guard.policies import STRENGTH, Decision
from trainguard.models.loading import is_lora
from trainguard.objectives import Objective
from trainguard.track.sinks import Sinks


class Engine:
    """Trains one stage. Pieces are built by the pipeline and handed in; the engine owns only the loop."""

    def __init__(
        self,
        *,
        stage: StageSection,
        stage_index: int,
        model: nn.Module,
        objective: Objective,
        source: SFTSource,
        eval_batches: list[Any],
        optimizer: torch.optim.Optimizer,
        accelerator: Accelerator,
        state: TrainState,
        total_steps: int,
        sinks: Sinks,
        checkpointer: Checkpointer,
        hooks: Hooks,
        guard: Guard | None = None,
        faults: FaultInjector | None = None,
        generation: Any = None,
        checkpoint_meta: dict[str, Any] | None = None,
        progress: Any = None,
    ) -> None:
        self.stage, self.stage_index = stage, stage_index
        self.model, self.objective, self.source = model, objective, source
        self.eval_batches = eval_batches
        self.optimizer, self.accelerator = optimizer, accelerator
        self.state, self.total_steps = state, total_steps
        self.sinks, self.checkpointer, self.hooks = sinks, checkpointer, hooks
        self.guard, self.faults, self.generation = guard, faults, generation
        self.checkpoint_meta, self.progress = checkpoint_meta or {}, progress
        self.modules = {"model": model, **objective.trainable_modules()}
        self.params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        self.result = StageResult(stage.name, 0)
        self.rollbacks = 0  # the world's memory: a rollback does not undo it
        self._post: tuple[int, torch.Tensor] | None = None  # (step, [weight_norm, update_norm]) not yet read

    # -- the step --------------------------------------------------------------------------------------
    def lr(self) -> float:
        s = self.stage.schedule
        peak = self.stage.optimizer.lr * self.state.lr_scale
        return lr_at(self.state.stage_step, peak, self.total_steps, s.warmup_steps, s.min_lr_ratio, s.name)

    def train_step(self) -> tuple[dict[str, float], list[Alert], Decision]:
        t0 = time.perf_counter()
        step, device, faults = self.state.global_step + 1, self.accelerator.device, self.faults
        micro = [self.source.next_batch() for _ in range(self.stage.grad_accum)]
        if faults is not None:
            micro = [faults.batch(mb, step) for mb in micro]
            faults.model(self.model, step, self.optimizer)
        alerts = self.check_batches(micro, step)
        early = self.guard.decide(alerts) if self.guard is not None else Decision()
        if STRENGTH[early.action] >= STRENGTH["skip_step"]:
            return {"guard/skipped": 1.0}, alerts, early  # never even run the bad batch

        units = max(sum(self.objective.weight(mb) for mb in micro), 1)  # normaliser over the whole window
        n_tokens = sum(mb.n_tokens for mb in micro)
        watch = self.guard is not None and self.guard.activations.due(step)
        if watch:
            self.guard.activations.attach(self.model)
        loss_total = torch.zeros((), device=device)
        for mb in micro:
            with self.accelerator.autocast():
                out = self.objective.loss(self.model, mb.to(device))
            loss = out.loss_sum / units
            if faults is not None:
                loss = faults.loss(loss, step)
            self.accelerator.backward(loss)
            loss_total += loss.detach()
        act_metrics, act_alerts = self.guard.activations.collect(step) if watch else ({}, [])

        lr = self.lr() if faults is None else faults.lr(self.lr(), step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if faults is not None:
            faults.grads(self.params, step)
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_max = abs_max(grads)
        if self.stage.max_grad_norm is not None:
            grad_norm = self.accelerator.clip_grad_norm_(self.params, self.stage.max_grad_norm)
        else:
            grad_norm = global_norm(grads)
        previous = self._post
        synced = [loss_total, grad_norm.float(), grad_max.float(), *(previous[1] if previous else [])]
        values = torch.stack(synced).tolist()  # the step's one host sync
        loss_v, gnorm, gmax = values[:3]
        if previous is not None:
            alerts += self.read_post(previous[0], values[3:])
        nan_count, inf_count = (0, 0) if math.isfinite(gnorm) else nonfinite_counts(grads)
        metrics = {
            "loss/train": loss_v,
            "opt/lr": lr,
            "grad/norm": gnorm,
            "grad/max": gmax,
            "grad/nan_count": nan_count,
            "grad/inf_count": inf_count,
            **act_metrics,
        }
        decision = Decision()
        if self.guard is not None:
            alerts += act_alerts + self.guard.observe(metrics, step, "pre")
            self.guard.note(act_alerts)
            decision = self.guard.decide(alerts)

        if STRENGTH[decision.action] >= STRENGTH["skip_step"]:
            self.optimizer.zero_grad(set_to_none=True)
            metrics["guard/skipped"] = 1.0
        else:
            before = [p.detach().clone() for p in self.params]
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            after = [p.detach() for p in self.params]
            self._post = (step, torch.stack([global_norm(after), update_norm(after, before)]))
        dt = time.perf_counter() - t0
        self.state.tokens_seen += n_tokens
        metrics |= {"perf/tokens_per_s": n_tokens / dt, "perf/step_time_s": dt, "data/epoch": self.source.epoch}
        return metrics, alerts, decision

    def check_batches(self, micro: list[Any], step: int) -> list[Alert]:
        if self.guard is None or self.guard.data is None:
            return []
        alerts = []
        for mb in micro:
            texts = self.hooks.decode(mb.input_ids) if self.hooks.decode else []
            alerts += self.guard.data.check_batch(mb.input_ids, mb.token_mask, texts, step)
        self.guard.note(alerts)
        return alerts

    def read_post(self, step: int, values: list[float]) -> list[Alert]:
        """Log a step's post-update stats (read one step late) and run the post-update detectors on them."""
        wnorm, unorm = values
        post = {"weights/norm": wnorm, "weights/update_ratio": unorm / wnorm if wnorm > 0 else 0.0}
        self.sinks.log(post, step, self.stage.name)
        self.result.last.update(post)
        self._post = None
        return self.guard.observe(post, step, "post") if self.guard is not None else []

    def flush_post(self) -> None:
        if self._post is not None:
            step, stats = self._post
            for alert in self.read_post(step, stats.tolist()):
                self.hooks.alert(alert)

    # -- between steps ---------------------------------------------------------------------------------
    def evaluate(self) -> None:
        if not self.eval_batches:
            return
        loss = eval_loss(self.model, self.objective, self.eval_batches, self.accelerator)
        self.log({"loss/eval": loss, "loss/eval_ppl": math.exp(min(loss, 50.0))})
        best = self.state.best_eval_loss
        if math.isfinite(loss) and (best is None or loss < best):
            self.state.best_eval_loss = loss
            if self.hooks.on_best is not None:
                self.hooks.on_best()
                self.hooks.event("best", f"new best eval loss {loss:.4f}", eval_loss=loss)

    def log(self, metrics: dict[str, float]) -> None:
        self.sinks.log(metrics, self.state.global_step, self.stage.name)
        self.result.last.update(metrics)

    def fit(self) -> StageResult:
        """Run steps until the stage's budget is spent; safe to call on a stage that a checkpoint ended."""
        self.model.train()
        t0 = time.perf_counter()
        while self.state.stage_step < self.total_steps:
            metrics, alerts, decision = self.train_step()
            for alert in alerts:
                self.hooks.alert(alert)
            if decision.action == "rollback" and self.rollback(decision):
                continue
            self.state.stage_step += 1
            self.state.global_step += 1
            self.log(metrics)
            self.act(decision)
            if self.generation is not None and self.generation.due(self.state.global_step):
                self.check_generation()
            done = self.state.stage_step == self.total_steps
            if done or self.state.stage_step % self.stage.eval_every == 0:
                self.evaluate()
            if done or self.state.stage_step % self.stage.save_every == 0:
                self.save()
            if self.progress is not None:
                self.progress.update(self.state.stage_step, metrics)
        self.flush_post()
        self.result.steps = self.state.stage_step
        self.result.seconds = time.perf_counter() - t0
        return self.result

    def act(self, decision: Decision) -> None:
        """Apply a decision that leaves the step in place (skip, lower LR, stop; rollback is handled before)."""
        action, step = decision.action, self.state.global_step
        if action == "none":
            return
        self.result.actions[action] = self.result.actions.get(action, 0) + 1
        if action == "lower_lr" and self.guard is not None:
            self.state.lr_scale *= self.guard.config.lower_lr_factor
            self.hooks.event(
                "action",
                f"lower_lr: LR scale now {self.state.lr_scale:.3g} ({decision.reason})",
                action=action,
                severity="warning",
                lr_scale=self.state.lr_scale,
            )
        elif action == "skip_step":
            self.hooks.event("action", f"skip_step at {step} ({decision.reason})", action=action, severity="warning")
        elif action in ("stop", "rollback"):  # a rollback that could not happen stops the run
            self.save(healthy=False)
            reason = decision.reason if action == "stop" else f"{decision.reason}; no rollback left"
            self.hooks.event("action", f"stop at step {step} ({reason})", action="stop", severity="critical")
            raise GuardStop(f"the guard stopped the run at step {step}: {reason}")

    def check_generation(self) -> None:
        metrics, alerts = self.generation.check(self.model, self.state.global_step)
        self.log(metrics)
        for alert in alerts:
            self.hooks.alert(alert)
        if self.guard is not None:
            self.guard.note(alerts)
            self.act(self.guard.decide(alerts))

    # -- rollback --------------------------------------------------------------------------------------
    def rollback(self, decision: Decision) -> bool:
        """Reload the newest healthy checkpoint of this stage at least `rollback_margin` steps before the
        onset and move the data cursor past everything seen since (PaLM); False when none can be had."""
        assert self.guard is not None
        onset = self.state.global_step + 1
        cfg = self.guard.config
        if self.rollbacks >= cfg.max_rollbacks:
            self.hooks.event(
                "action",
                f"rollback refused: {self.rollbacks} already (max_rollbacks)",
                severity="critical",
                action="rollback",
            )
            return False
        target = self.checkpointer.latest(
            where=lambda c: (
                c.healthy
                and c.step <= onset - cfg.rollback_margin
                and c.manifest.get("stage_index") == self.stage_index
            )
        )
        if target is None:
            self.hooks.event(
                "action",
                "rollback impossible: no healthy checkpoint before the onset",
                severity="critical",
                action="rollback",
            )
            return False
        cursor, lr_scale = self.source.cursor, self.state.lr_scale
        self._post = None
        self.load(target, world=False)
        skipped = cursor - self.source.cursor
        self.source.cursor = cursor  # skip the data seen between the checkpoint and the alert
        self.state.lr_scale = lr_scale
        self.rollbacks += 1
        dropped = self.hooks.forget_after(target.step)
        self.result.actions["rollback"] = self.result.actions.get("rollback", 0) + 1
        self.hooks.event(
            "action",
            f"rollback to {target.path.name} at step {onset} ({decision.reason}); skipped {skipped} samples",
            action="rollback",
            severity="warning",
            target=target.step,
            onset=onset,
            skipped_samples=skipped,
            dropped_rows=dropped,
        )
        return True

    # -- checkpoints -----------------------------------------------------------------------------------
    def trainable_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """Tensors to save: the full model, or only the adapters of a LoRA model (the base is rebuilt)."""
        out = {}
        for key, module in self.modules.items():
            module = self.accelerator.unwrap_model(module)
            if is_lora(module):
                out[key] = {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}
            else:
                out[key] = module.state_dict()
        return out

    def save(self, healthy: bool | None = None) -> Checkpoint:
        self.flush_post()
        self.sinks.flush()  # metrics up to this step are durable before the checkpoint exists
        if healthy is None:
            healthy = self.guard.checkpoint_is_healthy() if self.guard is not None else True
        step = self.state.global_step
        world = {"rollbacks": self.rollbacks, "faults": self.faults.state_dict() if self.faults else {}}
        ckpt = self.checkpointer.save(
            step,
            tensors=self.trainable_state(),
            objects={"optimizer": self.optimizer.state_dict(), "rng": capture_rng()},
            jsons={
                "state": {
                    "train": self.state.state_dict(),
                    "data": self.source.state_dict(),
                    "world": world,
                    "guard": self.guard.state_dict() if self.guard is not None else {},
                }
            },
            meta={"stage": self.stage.name, "stage_index": self.stage_index, **self.checkpoint_meta},
            healthy=healthy,
        )
        self.hooks.event(
            "checkpoint",
            f"saved {ckpt.path.name}" + ("" if healthy else " (not healthy)"),
            path=str(ckpt.path),
            healthy=healthy,
        )
        return ckpt

    def load(self, ckpt: Checkpoint, world: bool = True) -> None:
        """Restore every stateful piece from `ckpt` (of this stage); `world` also restores what a rollback
        must not undo (the rollback count, faults already fired), as a resume after a kill needs."""
        for key, module in self.modules.items():
            module = self.accelerator.unwrap_model(module)
            _, unexpected = module.load_state_dict(ckpt.tensors(key), strict=not is_lora(module))
            if unexpected:
                raise RuntimeError(f"checkpoint {ckpt.path.name} has unknown tensors for {key}: {unexpected[:3]}")
        self.optimizer.load_state_dict(ckpt.object("optimizer"))
        state = ckpt.json("state")
        self.state.load_state_dict(state["train"])
        self.source.load_state_dict(state["data"])
        if self.guard is not None and state.get("guard"):
            self.guard.load_state_dict(state["guard"])
        if world:
            self.rollbacks = state.get("world", {}).get("rollbacks", 0)
            if self.faults is not None and state.get("world", {}).get("faults"):
                self.faults.load_state_dict(state["world"]["faults"])
        restore_rng(ckpt.object("rng"))
