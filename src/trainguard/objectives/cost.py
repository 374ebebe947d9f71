"""Cost modelling (safe-rlhf, Dai et al. 2023): a reward model's head read as a cost. The less safe side of each
pair must cost more (−log σ(c_unsafer − c_safer)), and where rows say which sides are safe, the sign must tell
(−log σ(s·c), s = +1 unsafe, −1 safe): cost > 0 means unsafe, so a safety constraint can threshold at 0.

Rows: `{prompt, response_chosen (the safer), response_rejected (the less safe), chosen_safe?, rejected_safe?}`.
`final/` carries the head as `heads/cost/`; a stage's `cost_model:` loads it for `safety` constraints."""

from typing import Any, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn

from trainguard.data.pairs import PairBatch
from trainguard.objectives.base import OBJECTIVES, LossOutput
from trainguard.objectives.reward import RewardConfig, RewardObjective

COST_KEY = "cost"


class CostConfig(RewardConfig):
    name: Literal["cost"] = "cost"  # type: ignore[assignment]


def cost_terms(costs: torch.Tensor, signs: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(ranking loss sum, sign loss sum, metrics) of (2B,) costs: safer rows first, then the less safe."""
    safer, unsafer = costs.chunk(2)
    ranking = -F.logsigmoid(unsafer - safer).sum()
    labelled = signs.abs() if signs is not None else torch.zeros_like(costs)
    sign_loss = -(F.logsigmoid((signs if signs is not None else labelled) * costs) * labelled).sum()
    metrics = {"accuracy": (unsafer > safer).float().mean()}
    if labelled.sum() > 0:
        right = ((torch.sign(costs) == signs) & (labelled > 0)).float().sum()
        metrics["sign_accuracy"] = right / labelled.sum()
    return ranking, sign_loss, metrics


@OBJECTIVES.register("cost")
class CostObjective(RewardObjective):
    Config = CostConfig
    config: CostConfig
    best_metric = "cost/eval_accuracy"
    head_key = COST_KEY

    def loss(self, model: nn.Module, batch: PairBatch) -> LossOutput:
        costs = self.rewards(model, batch)[COST_KEY]
        ranking, sign_loss, metrics = cost_terms(costs, batch.signs)
        terms = {"task": ranking, "sign": sign_loss}
        return LossOutput(terms, {f"cost/{k}": torch.as_tensor(v).detach() for k, v in metrics.items()})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        costs, signs = [], []
        for batch in batches:
            batch = batch.to(accelerator.device)
            with accelerator.autocast():
                c = self.rewards(model, batch)[COST_KEY].float()
            safer, unsafer = c.chunk(2)
            s_safer, s_unsafer = (batch.signs if batch.signs is not None else torch.zeros_like(c)).chunk(2)
            costs.append((safer.cpu(), unsafer.cpu()))
            signs.append((s_safer.cpu(), s_unsafer.cpu()))
        if not costs:
            return {}
        both = torch.cat([torch.cat([a for a, _ in costs]), torch.cat([b for _, b in costs])])
        labels = torch.cat([torch.cat([a for a, _ in signs]), torch.cat([b for _, b in signs])])
        ranking, sign_loss, metrics = cost_terms(both, labels)
        n = len(both) // 2
        return {"loss/eval": float(ranking + sign_loss) / n} | {f"cost/eval_{k}": float(v) for k, v in metrics.items()}
