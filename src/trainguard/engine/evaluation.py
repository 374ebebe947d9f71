"""Held-out loss: the objective's summed loss over eval batches, divided by their units."""

from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.objectives import Objective


@torch.no_grad()
def eval_loss(model: nn.Module, objective: Objective, batches: list[Any], accelerator: Accelerator) -> float:
    model.eval()
    total, units = 0.0, 0
    try:
        for batch in batches:
            with accelerator.autocast():
                out = objective.loss(model, batch.to(accelerator.device))
            total += float(out.loss_sum)
            units += objective.weight(batch)
    finally:
        model.train()
    return total / max(units, 1)
