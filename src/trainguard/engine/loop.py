"""The engine: runs one stage's optimizer steps, with eval, checkpoints and best-model export between them.

`train_step` is the whole update, top to bottom: batches -> loss -> backward -> clip -> step -> stats.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.config import StageSection
from trainguard.data.sources import SFTSource
from trainguard.engine.checkpoint import Checkpoint, Checkpointer
from trainguard.engine.schedule import lr_at
from trainguard.engine.state import TrainState, capture_rng, restore_rng
from trainguard.engine.stats import abs_max, global_norm, nonfinite_counts, update_norm
from trainguard.models.loading import is_lora
from trainguard.objectives import Objective
from trainguard.track.sinks import Sinks


@dataclass
class StageResult:
    name: str
    steps: int
    seconds: float = 0.0
    last: dict[str, float] = field(default_factory=dict)  # last value of each metric
    tokens: int = 0


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
        event: Callable[..., None],
        on_best: Callable[[], None] | None = None,
        checkpoint_meta: dict[str, Any] | None = None,
        progress: Any = None,
    ) -> None:
        self.stage, self.stage_index = stage, stage_index
        self.model, self.objective, self.source = model, objective, source
        self.eval_batches = eval_batches
        self.optimizer, self.accelerator = optimizer, accelerator
        self.state, self.total_steps = state, total_steps
        self.sinks, self.checkpointer, self.event = sinks, checkpointer, event
        self.on_best, self.checkpoint_meta, self.progress = on_best, checkpoint_meta or {}, progress
        self.modules = {"model": model, **objective.trainable_modules()}
        self.params = [p for m in self.modules.values() for p in m.parameters() if p.requires_grad]
        self.result = StageResult(stage.name, 0)

    # -- the step --------------------------------------------------------------------------------------
    def lr(self) -> float:
        s = self.stage.schedule
        peak = self.stage.optimizer.lr * self.state.lr_scale
        return lr_at(self.state.stage_step, peak, self.total_steps, s.warmup_steps, s.min_lr_ratio, s.name)

    def train_step(self) -> dict[str, float]:
        t0 = time.perf_counter()
        device = self.accelerator.device
        micro = [self.source.next_batch() for _ in range(self.stage.grad_accum)]
        units = max(sum(self.objective.weight(mb) for mb in micro), 1)  # normaliser over the whole window
        n_tokens = sum(mb.n_tokens for mb in micro)
        loss_total = torch.zeros((), device=device)
        for mb in micro:
            with self.accelerator.autocast():
                out = self.objective.loss(self.model, mb.to(device))
            loss = out.loss_sum / units
            self.accelerator.backward(loss)
            loss_total += loss.detach()

        lr = self.lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_max = abs_max(grads)
        if self.stage.max_grad_norm is not None:
            grad_norm = self.accelerator.clip_grad_norm_(self.params, self.stage.max_grad_norm)
        else:
            grad_norm = global_norm(grads)
        before = [p.detach().clone() for p in self.params]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        after = [p.detach() for p in self.params]
        weight_norm = global_norm(after)
        stats = torch.stack([loss_total, grad_norm.float(), grad_max.float(), weight_norm, update_norm(after, before)])
        loss_v, gnorm, gmax, wnorm, unorm = stats.tolist()  # the step's one host sync
        nan_count, inf_count = (0, 0) if math.isfinite(gnorm) else nonfinite_counts(grads)
        dt = time.perf_counter() - t0
        self.state.tokens_seen += n_tokens
        return {
            "loss/train": loss_v,
            "opt/lr": lr,
            "grad/norm": gnorm,
            "grad/max": gmax,
            "grad/nan_count": nan_count,
            "grad/inf_count": inf_count,
            "weights/norm": wnorm,
            "weights/update_ratio": unorm / wnorm if wnorm > 0 else 0.0,
            "perf/tokens_per_s": n_tokens / dt,
            "perf/step_time_s": dt,
            "data/epoch": self.source.epoch,
        }

    # -- between steps ---------------------------------------------------------------------------------
    @torch.no_grad()
    def eval_loss(self) -> float:
        self.model.eval()
        total, units = 0.0, 0
        try:
            for batch in self.eval_batches:
                with self.accelerator.autocast():
                    out = self.objective.loss(self.model, batch.to(self.accelerator.device))
                total += float(out.loss_sum)
                units += self.objective.weight(batch)
        finally:
            self.model.train()
        return total / max(units, 1)

    def evaluate(self) -> None:
        if not self.eval_batches:
            return
        loss = self.eval_loss()
        metrics = {"loss/eval": loss, "loss/eval_ppl": math.exp(min(loss, 50.0))}
        self.log(metrics)
        best = self.state.best_eval_loss
        if math.isfinite(loss) and (best is None or loss < best):
            self.state.best_eval_loss = loss
            if self.on_best is not None:
                self.on_best()
                self.event("best", f"new best eval loss {loss:.4f}", eval_loss=loss)

    def log(self, metrics: dict[str, float]) -> None:
        self.sinks.log(metrics, self.state.global_step, self.stage.name)
        self.result.last.update(metrics)

    def fit(self) -> StageResult:
        """Run steps until the stage's budget is spent; safe to call on a stage that a checkpoint ended."""
        self.model.train()
        t0 = time.perf_counter()
        while self.state.stage_step < self.total_steps:
            metrics = self.train_step()
            self.state.stage_step += 1
            self.state.global_step += 1
            self.log(metrics)
            done = self.state.stage_step == self.total_steps
            if done or self.state.stage_step % self.stage.eval_every == 0:
                self.evaluate()
            if done or self.state.stage_step % self.stage.save_every == 0:
                self.save()
            if self.progress is not None:
                self.progress.update(self.state.stage_step, metrics)
        self.result.steps = self.state.stage_step
        self.result.seconds = time.perf_counter() - t0
        self.result.tokens = self.state.tokens_seen
        return self.result

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

    def save(self) -> Checkpoint:
        self.sinks.flush()  # metrics up to this step are durable before the checkpoint exists
        step = self.state.global_step
        ckpt = self.checkpointer.save(
            step,
            tensors=self.trainable_state(),
            objects={"optimizer": self.optimizer.state_dict(), "rng": capture_rng()},
            jsons={"state": {"train": self.state.state_dict(), "data": self.source.state_dict()}},
            meta={"stage": self.stage.name, "stage_index": self.stage_index, **self.checkpoint_meta},
        )
        self.event("checkpoint", f"saved {ckpt.path.name}", path=str(ckpt.path))
        return ckpt

    def load(self, ckpt: Checkpoint) -> None:
        """Restore every stateful piece from `ckpt`, which must belong to this stage."""
        for key, module in self.modules.items():
            module = self.accelerator.unwrap_model(module)
            tensors = ckpt.tensors(key)
            _, unexpected = module.load_state_dict(tensors, strict=not is_lora(module))
            if unexpected:
                raise RuntimeError(f"checkpoint {ckpt.path.name} has unknown tensors for {key}: {unexpected[:3]}")
        self.optimizer.load_state_dict(ckpt.object("optimizer"))
        state = ckpt.json("state")
        self.state.load_state_dict(state["train"])
        self.source.load_state_dict(state["data"])
        restore_rng(ckpt.object("rng"))
