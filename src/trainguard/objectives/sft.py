"""Supervised fine-tuning: token cross-entropy, on completion tokens only by default.

Batches whose rows carry task labels (the `mix` source) also get per-task losses (`loss/by_task/<task>`, the
mean token CE of that task's rows over the step), each task's share of rows (`data/share/<task>`) and each
row's mean token CE in `extras["row_loss"]` (B,), which the source reads to oversample hard examples."""

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from pydantic import Field
from torch import nn

from trainguard.data import mix  # noqa: F401  (registers the "mix" source)
from trainguard.data.batches import TokenBatch
from trainguard.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveConfig


class SFTConfig(ObjectiveConfig):
    name: Literal["sft"] = "sft"
    loss_on: Literal["completion", "all"] = Field(
        "completion",
        description="Tokens that carry loss: the completion only (prompt tokens are context), or all tokens.",
    )


def target_mask(batch: TokenBatch, loss_on: str) -> torch.Tensor:
    """(B, T) bool: positions whose token is predicted, i.e. the target of the previous position."""
    return batch.completion_mask if loss_on == "completion" else batch.token_mask


def token_cross_entropy_sum(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum of -log p(x_t | x_<t) over masked targets. logits (B, T, V); input_ids, mask (B, T)."""
    targets = input_ids[:, 1:].masked_fill(~mask[:, 1:], -100)  # (B, T-1)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")


def row_cross_entropy(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's sum of -log p(x_t | x_<t) over its masked targets (B,) and its number of targets (B,)."""
    targets = input_ids[:, 1:].masked_fill(~mask[:, 1:], -100)  # (B, T-1)
    per_token = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="none"
    )  # ignored targets give 0
    return per_token.view(targets.shape).sum(1), mask[:, 1:].sum(1)


def sums_by_task(
    row_sums: torch.Tensor, row_targets: torch.Tensor, tasks: tuple[str, ...]
) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per task, in order of first appearance: the sum of its rows' losses, of their target counts, and its
    number of rows. Sums, not means, so the step can divide its totals (a task missing from a micro-batch is
    not diluted). A one-hot product built on the host and copied without a sync (index_add_ is not
    deterministic on CUDA; torch.tensor(..., device=cuda) would wait for the device)."""
    names = list(dict.fromkeys(tasks))
    onehot = torch.tensor([[t == name for t in tasks] for name in names], dtype=torch.float32)  # (K, B)
    onehot = onehot.to(row_sums.device, non_blocking=True)
    sums, counts, rows = onehot @ row_sums.float(), onehot @ row_targets.float(), onehot.sum(1)  # (K,) each
    return {name: (sums[k], counts[k], rows[k]) for k, name in enumerate(names)}


@OBJECTIVES.register("sft")
class SFTObjective(Objective):
    Config = SFTConfig
    config: SFTConfig

    def weight(self, batch: TokenBatch) -> int:
        return int(target_mask(batch, self.config.loss_on)[:, 1:].sum())

    def loss(self, model: nn.Module, batch: TokenBatch) -> LossOutput:
        # Right padding under a causal mask cannot change real positions, so no attention mask is passed.
        logits = model(input_ids=batch.input_ids).logits  # (B, T, V)
        mask = target_mask(batch, self.config.loss_on)
        tasks = getattr(batch, "tasks", None)
        if tasks is None:
            loss_sum = token_cross_entropy_sum(logits, batch.input_ids, mask)
            return LossOutput({"task": loss_sum}, extras={"logits": logits})
        row_sums, row_targets = row_cross_entropy(logits, batch.input_ids, mask)  # (B,), (B,)
        by_task = sums_by_task(row_sums.detach(), row_targets, tasks)
        extras = {
            "logits": logits,
            "row_loss": (row_sums / row_targets.clamp(min=1)).detach(),
            # ratios: (numerator, denominator) that StepTensors sums over the step's micro-batches, then divides
            "ratios": {f"loss/by_task/{name}": (total, n) for name, (total, n, _) in by_task.items()},
        }
        share = {f"data/share/{name}": rows / len(tasks) for name, (_, _, rows) in by_task.items()}
        return LossOutput({"task": row_sums.sum()}, metrics=share, extras=extras)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        """The base's loss/eval and perplexity, and `loss/eval/by_task/<task>` with its perplexity
        (`loss/eval_ppl/by_task/<task>`) when the batches carry tasks."""
        total, units = 0.0, 0
        sums: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for batch in batches:
            with accelerator.autocast():
                out = self.loss(model, batch.to(accelerator.device))
            total += float(out.total)
            units += self.weight(batch)
            for name, (num, den) in out.extras.get("ratios", {}).items():
                key = name.replace("loss/", "loss/eval/", 1)
                sums[key] = (sums[key][0] + num, sums[key][1] + den) if key in sums else (num, den)
        metrics = {"loss/eval": total / max(units, 1)}
        metrics["loss/eval_ppl"] = math.exp(min(metrics["loss/eval"], 50.0))
        if sums:
            values = torch.stack([v for pair in sums.values() for v in pair]).tolist()
            by_task = {k: n / d for k, n, d in zip(sums, values[::2], values[1::2], strict=True) if d > 0}
            ppl = {k.replace("loss/eval/", "loss/eval_ppl/", 1): math.exp(min(v, 50.0)) for k, v in by_task.items()}
            metrics |= by_task | ppl
        return metrics
