"""Supervised fine-tuning: token cross-entropy, on completion tokens only by default."""

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from pydantic import Field
from torch import nn

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


@OBJECTIVES.register("sft")
class SFTObjective(Objective):
    Config = SFTConfig
    config: SFTConfig

    def weight(self, batch: TokenBatch) -> int:
        return int(target_mask(batch, self.config.loss_on)[:, 1:].sum())

    def loss(self, model: nn.Module, batch: TokenBatch) -> LossOutput:
        # Right padding under a causal mask cannot change real positions, so no attention mask is passed.
        logits = model(input_ids=batch.input_ids).logits  # (B, T, V)
        loss_sum = token_cross_entropy_sum(logits, batch.input_ids, target_mask(batch, self.config.loss_on))
        return LossOutput({"task": loss_sum}, extras={"logits": logits})

    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        metrics = super().evaluate(model, batches, accelerator)
        return metrics | {"loss/eval_ppl": math.exp(min(metrics["loss/eval"], 50.0))}
