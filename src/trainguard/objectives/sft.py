"""Supervised fine-tuning: token cross-entropy, on completion tokens only by default.

Batches whose rows carry task labels (the `mix` source) also get per-task losses (`loss/by_task/<task>`, the
mean token CE of that task's rows over the step), each task's share of rows (`data/share/<task>`) and each
row's mean token CE in `extras["row_loss"]` (B,), which the source reads to oversample hard examples.

The LM head runs only from the batch's earliest target onward (HF `logits_to_keep`): `extras["logits"]` is
(B, T - s, V), aligned with `input_ids[:, s:]`, where s = `extras["logits_start"]` (0 when every position is kept).
Packed batches (data/packing.py) pass their `position_ids`; the model keeps attention within each example."""

import functools
import inspect
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from pydantic import Field
from torch import nn

from trainguard.data import mix  # noqa: F401  (registers the "mix" source)
from trainguard.data.batches import TokenBatch, first_target
from trainguard.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveConfig


class SFTConfig(ObjectiveConfig):
    name: Literal["sft"] = "sft"
    loss_on: Literal["completion", "all"] = Field(
        "completion",
        description="Tokens that carry loss: the completion only (prompt tokens are context), or all tokens.",
    )


def target_mask(batch: TokenBatch, loss_on: str) -> torch.Tensor:
    """(B, T) bool: positions whose token is predicted, i.e. the target of the previous position. In packed rows
    an example's first token (position 0) is not: the token before it belongs to another example."""
    mask = batch.completion_mask if loss_on == "completion" else batch.token_mask
    positions = getattr(batch, "position_ids", None)
    return mask if positions is None else mask & (positions > 0)


@functools.cache
def _forward_params(cls: type) -> frozenset[str]:
    """A model class's forward parameters, read once per class (the loss asks on every micro-batch)."""
    return frozenset(inspect.signature(cls.forward).parameters)


def keeps_logits(model: nn.Module) -> bool:
    """Whether the model's forward takes `logits_to_keep` (HF causal LMs do; a hand-written module may not),
    looking through the wrappers that pass keywords on: DDP/FSDP (`module`), peft, torch.compile."""
    while True:
        if hasattr(model, "get_base_model"):  # peft: the transformers model under the adapters
            model = model.get_base_model()
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):  # DDP, FSDP
            model = model.module
        else:
            return "logits_to_keep" in _forward_params(type(model))


def logits_start(batch: TokenBatch, loss_on: str) -> int:
    """The first position whose logits the loss reads: one before the batch's earliest target. Read from the
    host copy (`target_start`) when the batch was moved to a device, so no sync."""
    if loss_on != "completion":
        return 0  # every real token is a target: position 1 is one in any row longer than a token
    mask = batch.completion_mask
    start = getattr(batch, "target_start", None)
    if start is None or mask.device.type == "cpu":
        start = first_target(mask)
    return max(start - 1, 0)


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
        # Right padding under a causal mask cannot change real positions, so no attention mask is passed; packed
        # rows pass their restarting positions, from which the model builds a block-diagonal causal mask.
        kwargs: dict[str, Any] = {}
        start = logits_start(batch, self.config.loss_on) if keeps_logits(model) else 0
        if start > 0:  # the LM head only from the earliest target's predictor on (positions start .. T-1)
            kwargs["logits_to_keep"] = batch.input_ids.shape[1] - start
        if getattr(batch, "position_ids", None) is not None:
            kwargs |= {"position_ids": batch.position_ids, "use_cache": False}  # a cache would hide the packing
        logits = model(input_ids=batch.input_ids, **kwargs).logits  # (B, T - start, V)
        ids, mask = batch.input_ids[:, start:], target_mask(batch, self.config.loss_on)[:, start:]  # (B, T - start)
        tasks = getattr(batch, "tasks", None)
        if tasks is None:
            loss_sum = token_cross_entropy_sum(logits, ids, mask)
            return LossOutput({"task": loss_sum}, extras={"logits": logits, "logits_start": start})
        row_sums, row_targets = row_cross_entropy(logits, ids, mask)  # (B,), (B,)
        by_task = sums_by_task(row_sums.detach(), row_targets, tasks)
        extras = {
            "logits": logits,
            "logits_start": start,
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
