"""The engine: runs one stage's steps, with the guard's decisions, evaluation and checkpoints between.

`train_step` is the whole step, top to bottom: batches (the source gets the live policy) -> data checks ->
inner updates (forward, loss terms, backward, clip; every update but the last is applied at once) -> one
host sync -> detectors -> policy -> the last update applied or not. Post-update stats (weight norm,
|Δw|/|w|) are read at the next step's sync, so the loop never waits on the device twice per step.
"""

import math
import time
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn
from torch.distributed.tensor import DTensor

from trainguard import ranks
from trainguard.data.batches import TokenBatch
from trainguard.engine.flops import flops_per_token, matmul_params
from trainguard.engine.optim import set_group_lrs
from trainguard.engine.outcome import GuardStop, StageResult
from trainguard.engine.pieces import RunServices, StagePieces
from trainguard.engine.recovery import Recovery
from trainguard.engine.reviews import Reviews
from trainguard.engine.schedule import lr_at
from trainguard.engine.sharding import LocalOptimizerState, is_sharded, local, norms
from trainguard.engine.state import RngBundle, StateRegistry
from trainguard.engine.stats import abs_max, global_norm, nonfinite_counts, update_norm
from trainguard.engine.step import StepTensors
from trainguard.errors import ConfigError
from trainguard.guard.actions import ACTIONS
from trainguard.guard.alerts import Alert
from trainguard.guard.policies import Decision

PLAIN_GRADIENTS = (DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)


class Engine(Recovery, Reviews):
    """Trains one stage; owns only the loop. Every resumable piece is in `self.registry`."""

    def __init__(self, pieces: StagePieces, services: RunServices, progress: Any = None) -> None:
        self.pieces, self.services, self.progress = pieces, services, progress
        p, s = pieces, services
        self.stage, self.model, self.objective, self.source = p.stage, p.model, p.objective, p.source
        self.optimizer, self.guard, self.accelerator = p.optimizer, p.guard, s.accelerator
        self.state, self.knobs, self.hooks, self.faults = s.state, s.knobs, s.hooks, s.faults
        self.modules: dict[str, nn.Module] = {"model": p.model, **p.heads}
        self.params = [q for m in self.modules.values() for q in m.parameters() if q.requires_grad]
        self.fsdp = is_sharded(p.model)  # run.fsdp: the model's parameters are this rank's shards, heads whole
        self.sharded = [self.fsdp and isinstance(q, DTensor) for q in self.params]
        self.replicated = [q for q, s in zip(self.params, self.sharded, strict=True) if not s]
        self.policy = self.accelerator.unwrap_model(p.model, keep_torch_compile=False)
        self.matmul_params = matmul_params(self.policy)  # for perf/mfu
        self.eval_data = p.source.eval_data()
        self.result = StageResult(p.stage.name, 0)
        s.checkpointer.keep = p.stage.save_total_limit
        self._post: tuple[int, torch.Tensor] | None = None  # (step, [weight_norm, update_norm]) not yet read
        self.registry = StateRegistry()
        optimizer = LocalOptimizerState(p.optimizer) if self.fsdp else p.optimizer
        for key, piece in (("train", s.state), ("optimizer", optimizer), ("source", p.source)):
            self.registry.register(key, piece)
        self.registry.register("objective", p.objective)
        for plugin in p.plugins:
            self.registry.register(f"plugin/{plugin.key}", plugin)
        if p.guard is not None:
            self.registry.register("guard", p.guard)
        if p.watch is not None:
            self.registry.register("watch", p.watch, on_rollback="keep")
        self.registry.register("knobs", s.knobs, on_rollback="keep")
        self.registry.register("world", s.world, on_rollback="keep")
        if s.faults is not None:
            self.registry.register("faults", s.faults, on_rollback="keep")
        self.registry.register("rng", RngBundle())  # last: restoring the others must not move it

    # -- the step --------------------------------------------------------------------------------------
    def set_lrs(self, step: int) -> dict[str, float]:
        """Each param group's base LR x the LR scale, through the schedule (and an injected LR fault)."""
        sched, scale = self.stage.schedule, self.knobs["lr_scale"]
        boost = self.faults.lr_factor(step) if self.faults is not None else 1.0

        def factor(base: float) -> float:
            peak = base * scale
            return (
                lr_at(
                    self.state.stage_step,
                    peak,
                    self.pieces.total_steps,
                    sched.warmup_steps,
                    sched.min_lr_ratio,
                    sched.name,
                )
                * boost
            )

        return set_group_lrs(self.optimizer, factor)

    def train_step(self) -> tuple[dict[str, float], list[Alert], Decision]:
        t0 = time.perf_counter()
        step, faults = self.state.global_step + 1, self.faults
        micro = [self.source.next_batch(self.policy) for _ in range(self.stage.grad_accum)]
        if faults is not None:
            micro = [faults.batch(mb, step) if isinstance(mb, TokenBatch) else mb for mb in micro]
            faults.model(self.model, step, self.optimizer)
        for mb in micro:
            for plugin in self.pieces.plugins:
                plugin.prepare(mb)
        alerts = self.guard.check_batches(micro, step, self.hooks.decode) if self.guard is not None else []
        early = self.guard.decide(alerts) if self.guard is not None else Decision()
        if early.at_least("skip_step"):
            return {"guard/skipped": 1.0}, alerts, early  # never even run the bad batch

        lrs = self.set_lrs(step)
        watch = self.guard is not None and self.guard.activations.due(step)
        if watch:
            self.guard.activations.attach(self.model)
        acc = StepTensors(self.accelerator.device, track_updates=self.objective.early_stop_key is not None)
        updates = self.objective.plan(micro)
        before: list[torch.Tensor] | None = None
        applied = 0
        for k, update in enumerate(updates):
            self.backward(update, step, acc)
            if k == len(updates) - 1:
                break  # the last update waits for the guard
            before = before or self.weights(copy=True)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            applied += 1
            key = self.objective.early_stop_key
            if key is not None and self.objective.stop_early(acc.last_metric(key)):
                break  # one extra sync per inner update, only when the objective asks for it
        pending = applied < acc.updates  # the last update waits for the guard (unless an early stop ended it)
        act_metrics, act_alerts = self.guard.activations.collect(step) if watch else ({}, [])

        previous = self._post
        acc.tokens = here = sum(getattr(mb, "n_tokens", 0) for mb in micro)  # sync turns it into every rank's
        metrics, norms, post = acc.sync(list(previous[1]) if previous else [])  # the step's one host sync
        if previous is not None:
            alerts += self.read_post(previous[0], post)
        if not math.isfinite(metrics["grad/norm"]):  # over every rank's shards: all ranks see the same norm
            nan, inf = nonfinite_counts([local(q.grad) for q in self.params if q.grad is not None])
            if self.fsdp:
                nan, inf = ranks.sum_int(nan), ranks.sum_int(inf)
        else:
            nan, inf = 0, 0
        metrics |= {"opt/lr": lrs.pop("model", next(iter(lrs.values()), 0.0))}
        metrics |= {f"opt/lr/{key}": lr for key, lr in lrs.items()}
        metrics |= {"grad/nan_count": nan, "grad/inf_count": inf, **act_metrics}
        decision = self.decide(metrics, alerts, act_alerts, norms[:applied], step)

        if pending and decision.at_least("skip_step"):
            self.optimizer.zero_grad(set_to_none=True)
            metrics["guard/skipped"] = 1.0
        elif pending:
            before = before or self.weights(copy=True)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        if before is not None and "guard/skipped" not in metrics:
            self._post = (step, self.post_norms(self.weights(), before))
        metrics["opt/inner_updates"] = acc.updates
        dt = time.perf_counter() - t0
        n_tokens = acc.tokens  # over every rank
        self.state.tokens_seen += n_tokens
        metrics |= {"perf/tokens_per_s": n_tokens / dt, "perf/step_time_s": dt, "data/epoch": self.source.epoch}
        if self.services.peak_flops is not None:
            rows = sum(mb.input_ids.shape[0] for mb in micro if hasattr(mb, "input_ids")) or 1
            per_token = flops_per_token(self.policy.config, self.matmul_params, here / rows)
            metrics["perf/mfu"] = here / dt * per_token / self.services.peak_flops  # this rank's device
        return metrics, alerts, decision

    def backward(self, update: list[Any], step: int, acc: StepTensors) -> None:
        """One inner update's forward and backward over its micro-batches, then the clip."""
        weights = [self.objective.weight(mb) for mb in update]  # known before the forward (no sync after it)
        units = max(ranks.sum_int(sum(weights)), 1)  # normaliser over the whole update, on every rank
        for k, (mb, weight) in enumerate(zip(update, weights, strict=True)):
            if self.fsdp:  # one reduce-scatter per update: the earlier micro-batches accumulate unsharded
                self.model.set_requires_gradient_sync(k == len(update) - 1)
            with self.accelerator.autocast():
                out = self.objective.loss(self.model, mb.to(self.accelerator.device))
                out.extras.setdefault("units", weight)
                for plugin in self.pieces.plugins:
                    out.terms |= plugin.terms(mb, out)
            self.source.observe(mb, out)
            loss = out.total / units
            if self.faults is not None:
                loss = self.faults.loss(loss, step)
            self.accelerator.backward(loss)
            acc.add_micro(loss, out, units)
        ranks.sum_grads(self.replicated)  # every rank's share of the update (no-op with one process)
        if self.faults is not None:
            self.faults.grads(self.params, step)
        grads = [local(q.grad) for q in self.params if q.grad is not None]
        grad_max = abs_max(grads)  # before the clip scales them
        if self.fsdp:  # FSDP already reduce-scattered them: each rank holds its shards
            grad_max = ranks.max_(grad_max)
        norm = self.clip(grads) if self.stage.max_grad_norm is not None else self.grad_norm(grads)
        acc.add_grads(grads, grad_max, norm)

    def clip(self, grads: list[torch.Tensor]) -> torch.Tensor:
        """accelerate's clip for unsharded gradients, except that a non-finite norm leaves them as they are:
        the guard then counts NaN and Inf as they came (Inf x 0 would turn each Inf into a NaN), and such an
        update is never applied. Returns the pre-clip norm."""
        max_norm = self.stage.max_grad_norm * self.knobs["clip_scale"]  # type: ignore[operator]
        if self.accelerator.distributed_type not in PLAIN_GRADIENTS:
            return self.accelerator.clip_grad_norm_(self.params, max_norm)
        self.accelerator.unscale_gradients()
        norm = self.grad_norm(grads)
        if self.fsdp:  # torch's clip would mix the shards with a plain norm
            coef = torch.clamp(max_norm / (torch.where(norm.isfinite(), norm, 0.0) + 1e-6), max=1.0)
            torch._foreach_mul_(grads, coef)
        else:
            torch.nn.utils.clip_grads_with_norm_(self.params, max_norm, torch.where(norm.isfinite(), norm, 0.0))
        return norm

    def grad_norm(self, grads: list[torch.Tensor]) -> torch.Tensor | None:
        """The gradient's global norm over every rank's shards (None without shards: the step works it out)."""
        if not self.fsdp:
            return torch.nn.utils.get_total_norm(grads) if self.stage.max_grad_norm is not None else None
        none = torch.zeros(0, device=self.accelerator.device)  # a parameter that no loss reached
        return norms([[local(q.grad) if q.grad is not None else none for q in self.params]], self.sharded)[0]

    def weights(self, copy: bool = False) -> list[torch.Tensor]:
        """The trainables as this rank holds them (its shards under FSDP); `copy`: a scratch copy."""
        held = [local(q.detach()) for q in self.params]
        return [t.clone() for t in held] if copy else held

    def post_norms(self, after: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
        """[||w||, ||Δw||] after an update; `before` is overwritten (see update_norm)."""
        if not self.fsdp:
            return torch.stack([global_norm(after), update_norm(after, before)])
        torch._foreach_sub_(before, after)
        return norms([after, before], self.sharded)

    def decide(
        self, metrics: dict[str, float], alerts: list[Alert], act_alerts: list[Alert], applied: list[float], step: int
    ) -> Decision:
        if self.guard is None:
            return Decision()
        alerts += act_alerts + self.guard.observe(metrics, step, "pre", grace=self.in_grace(step))
        self.guard.note(act_alerts)
        decision = self.guard.decide(alerts)
        if not applied or decision.at_least("rollback"):
            return decision
        # Inner updates already in the weights: skipping the rest would leave half a step; only a rollback undoes it.
        if any(not math.isfinite(n) for n in applied):
            why = "roll back: a non-finite inner update was applied"
            alert = Alert("nonfinite", "critical", step, math.nan, 0.0, why, {"applied_updates": len(applied)})
            alerts.append(alert)
            self.guard.note([alert])
            return Decision("rollback", [alert])
        return Decision("rollback", decision.alerts) if decision.at_least("skip_step") else decision

    def in_grace(self, step: int) -> bool:
        """Whether global `step` is among this stage's first `grace_steps` (a new objective's first steps)."""
        assert self.guard is not None
        first = self.state.global_step - self.state.stage_step + 1  # the stage's first global step
        return step - first < self.guard.config.grace_steps

    def read_post(self, step: int, values: list[float]) -> list[Alert]:
        """Log a step's post-update stats (read one step late) and run the post-update detectors on them."""
        wnorm, unorm = values
        post = {"weights/norm": wnorm, "weights/update_ratio": unorm / wnorm if wnorm > 0 else 0.0}
        self.services.sinks.log(post, step, self.stage.name)
        self.result.last.update(post)
        self._post = None
        if self.guard is None:
            return []
        return self.guard.observe(post, step, "post", grace=self.in_grace(step))

    def flush_post(self) -> list[Alert]:
        """Read the pending post-update stats now (one sync) and report their alerts."""
        if self._post is None:
            return []
        step, stats = self._post
        alerts = self.read_post(step, stats.tolist())
        for alert in alerts:
            self.hooks.alert(alert)
        return alerts

    def settle_post(self) -> bool:
        """Before a checkpoint: the last step's post-update stats are read and acted on now, so a rollback
        they call for happens before anything is saved (not one step and one checkpoint later). True when
        it rolled back."""
        alerts = self.flush_post()
        decision = self.guard.decide(alerts) if self.guard is not None else Decision()
        if decision.action == "rollback" and self.rollback(decision, onset=self.state.global_step):
            return True
        self.act(decision)
        return False

    # -- between steps ---------------------------------------------------------------------------------
    def unwrapped(self) -> dict[str, nn.Module]:
        return {key: self.accelerator.unwrap_model(m, keep_torch_compile=False) for key, m in self.modules.items()}

    def train_mode(self, on: bool) -> None:
        for module in self.modules.values():
            module.train(on)

    def best_rule(self) -> tuple[str, str]:
        return (self.stage.best_metric or self.objective.best_metric, self.stage.best_mode or self.objective.best_mode)

    def evaluate(self) -> None:
        if not self.eval_data:
            return
        self.train_mode(False)
        try:
            metrics = self.objective.evaluate(self.model, self.eval_data, self.accelerator)
        finally:
            self.train_mode(True)
        self.log(metrics)
        key, mode = self.best_rule()
        if key not in metrics:
            raise ConfigError(
                f"stages.{self.pieces.index}.best_metric: {key!r} is not an eval metric of this objective; "
                f"available: {', '.join(sorted(metrics))}"
            )
        value, best = metrics[key], self.state.best_value
        better = math.isfinite(value) and (best is None or (value < best if mode == "min" else value > best))
        if ranks.max_int(int(better)):  # decided together: a sharded best/ export is a collective
            self.state.best_value = value
            if self.hooks.on_best is not None:
                self.hooks.on_best()
                self.hooks.event("best", f"new best {key} {value:.4f}", metric=key, value=value)

    def log(self, metrics: dict[str, float]) -> None:
        self.services.sinks.log(metrics, self.state.global_step, self.stage.name)
        self.result.last.update(metrics)

    def fit(self) -> StageResult:
        """Run steps until the stage's budget is spent; safe to call on a stage that a checkpoint ended."""
        self.train_mode(True)
        t0 = time.perf_counter()
        total = self.pieces.total_steps
        while self.state.stage_step < total:
            metrics, alerts, decision = self.train_step()
            for alert in alerts:
                self.hooks.alert(alert)
            if decision.action == "rollback" and self.rollback(decision):
                continue
            self.state.stage_step += 1
            self.state.global_step += 1
            after: dict[str, float] = {}
            if "guard/skipped" not in metrics:  # plug-ins learn only from applied steps
                for piece in (self.objective, *self.pieces.plugins):
                    after |= piece.after_step(metrics | after)
            metrics |= after
            self.log(metrics)
            self.act(decision)
            if after and self.guard is not None:
                self.check_after(metrics)
            generation = self.pieces.generation
            if generation is not None and generation.due(self.state.global_step):
                self.check_generation()
            done = self.state.stage_step == total
            due_save = done or self.state.stage_step % self.stage.save_every == 0
            if due_save and self.settle_post():
                continue  # the step's own update stats called for a rollback: nothing of it is saved
            if done or self.state.stage_step % self.stage.eval_every == 0:
                self.evaluate()
            watch = self.pieces.watch
            if watch is not None and watch.due(self.state.stage_step, done) and self.check_watch(done):
                continue  # the promotion gate rejected this model and the guard rolled it back: nothing is saved
            if due_save:
                self.save()
            if self.progress is not None:
                self.progress.update(self.state.stage_step, metrics)
        self.flush_post()
        self.result.steps = self.state.stage_step
        self.result.seconds = time.perf_counter() - t0
        return self.result

    def check_after(self, metrics: dict[str, float]) -> None:
        """The guard's "after" detectors on what the plug-ins made of the applied step (a constraint's
        satisfaction); the update stands, so their actions are knobs or a stop."""
        assert self.guard is not None
        step = self.state.global_step
        alerts = self.guard.observe(metrics, step, "after", grace=self.in_grace(step))
        for alert in alerts:
            self.hooks.alert(alert)
        self.act(self.guard.decide(alerts))

    def act(self, decision: Decision) -> None:
        """Apply a decision that leaves the step in place (knob actions, skip, stop; rollback came before)."""
        action, step = decision.action, self.state.global_step
        if action == "none":
            return
        self.result.actions[action] = self.result.actions.get(action, 0) + 1
        if action in ("stop", "rollback"):  # a rollback that could not happen stops the run
            self.save(healthy=False)
            reason = decision.reason if action == "stop" else f"{decision.reason}; no rollback left"
            self.hooks.event("action", f"stop at step {step} ({reason})", action="stop", severity="critical")
            raise GuardStop(f"the guard stopped the run at step {step}: {reason}")
        change = ACTIONS.get(action).apply(self.knobs, self.guard.config) if self.guard is not None else None
        message = f"{action}: {change}" if change else f"{action} at {step}"
        knobs = dict(self.knobs.values)
        self.hooks.event("action", f"{message} ({decision.reason})", action=action, severity="warning", knobs=knobs)
