"""Reward modelling (Bradley-Terry): the policy's last hidden state at each side's last real token, through a
`RewardHead`, and −log σ(r_chosen − r_rejected − margin) per pair. The model and head are those of
`trainguard.reward.RewardModel`, so `final/` loads with `load_reward_model(folder)`.

Optional extra heads, one per principle (`principles: [harm_prevention, ...]`), share the model and learn
from rows' `principles: {name: chosen|rejected}` labels: multi-objective rewards."""

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from pydantic import Field
from torch import nn

from trainguard.data import pairs  # noqa: F401  (registers the "pairs" source, this objective's default)
from trainguard.data.pairs import PairBatch
from trainguard.engine.optim import ParamGroupSection
from trainguard.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveConfig, ObjectiveContext
from trainguard.reward.model import HEAD_KEY, RewardHead, last_hidden_state, rewards_at_last_token


class RewardConfig(ObjectiveConfig):
    name: Literal["reward"] = "reward"
    margin: float = Field(0.0, ge=0, description="Wanted reward gap between chosen and rejected (0: plain BT).")
    center_coef: float = Field(
        0.0, ge=0, description="Weight of mean((r_c + r_r)^2), which keeps rewards near zero (Eisenstein et al.)."
    )
    principles: list[str] = Field(
        default_factory=list,
        description="Extra heads, one per principle, trained on rows' `principles: {name: chosen|rejected}`.",
    )
    head_lr_mult: float = Field(1.0, gt=0, description="LR multiplier of the reward heads relative to the model.")
    separator: str = Field(
        " ",
        description='Text between prompt and response. A space, as in the write-up; "" scores a pair exactly '
        "as an SFT record {prompt, completion} is rendered, which suits a model fine-tuned on such records.",
    )


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.float() - x.float().mean(), y.float() - y.float().mean()
    denom = float(x.norm() * y.norm())
    return float((x * y).sum()) / denom if denom > 0 else 0.0


@OBJECTIVES.register("reward")
class RewardObjective(Objective):
    Config = RewardConfig
    config: RewardConfig
    default_source = "pairs"
    best_metric = "reward/eval_accuracy"
    best_mode = "max"
    head_key: ClassVar[str] = HEAD_KEY  # the exported head's name (heads/<key>/)

    def __init__(self, config: RewardConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        hidden = ctx.model_config.hidden_size
        keys = [self.head_key, *(f"{self.head_key}_{p}" for p in config.principles)]
        self.heads = {key: RewardHead(hidden, separator=config.separator) for key in keys}

    def trainable_modules(self) -> dict[str, nn.Module]:
        return dict(self.heads)

    def param_group_defaults(self) -> dict[str, ParamGroupSection]:
        return {key: ParamGroupSection(lr_mult=self.config.head_lr_mult) for key in self.heads}

    def weight(self, batch: PairBatch) -> int:
        return batch.n_pairs

    def rewards(self, model: nn.Module, batch: PairBatch) -> dict[str, torch.Tensor]:
        """Head key -> (2B,) rewards: chosen rows first, then rejected."""
        hidden = last_hidden_state(model, batch.input_ids, batch.attention_mask)  # (2B, T, H)
        return {key: rewards_at_last_token(hidden, batch.attention_mask, head) for key, head in self.heads.items()}

    def loss(self, model: nn.Module, batch: PairBatch) -> LossOutput:
        rewards = self.rewards(model, batch)
        chosen, rejected = rewards[HEAD_KEY].chunk(2)  # (B,), (B,)
        gap = chosen - rejected
        terms = {"task": -F.logsigmoid(gap - self.config.margin).sum()}
        if self.config.center_coef:
            terms["center"] = self.config.center_coef * (chosen + rejected).pow(2).sum()
        for name in self.config.principles:
            label = batch.principles[name]  # (B,) +1, -1 or 0
            c, r = rewards[f"{HEAD_KEY}_{name}"].chunk(2)
            terms[f"principle_{name}"] = -(F.logsigmoid(label * (c - r)) * label.abs()).sum()
        metrics = {
            "reward/accuracy": (gap > 0).float().mean(),
            "reward/margin": gap.mean(),
            "reward/chosen_mean": chosen.mean(),
            "reward/rejected_mean": rejected.mean(),
        }
        return LossOutput(terms, {k: v.detach() for k, v in metrics.items()})

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        """Held-out loss and accuracy, both sides' reward mean and std, and how much reward follows length."""
        chosen, rejected, lengths, loss = [], [], [], 0.0
        for batch in batches:
            batch = batch.to(accelerator.device)
            with accelerator.autocast():
                rewards = self.rewards(model, batch)[HEAD_KEY].float()
            c, r = rewards.chunk(2)
            chosen.append(c.cpu())
            rejected.append(r.cpu())
            lengths.append(batch.lengths.cpu())
            loss += float(-F.logsigmoid(c - r).sum())
        if not chosen:
            return {}
        c, r, n = torch.cat(chosen), torch.cat(rejected), sum(len(x) for x in chosen)
        both = torch.cat([c, r])
        return {
            "loss/eval": loss / n,
            "reward/eval_accuracy": float((c > r).float().mean()),
            "reward/eval_margin": float((c - r).mean()),
            "reward/eval_chosen_mean": float(c.mean()),
            "reward/eval_chosen_std": float(c.std()) if n > 1 else 0.0,
            "reward/eval_rejected_mean": float(r.mean()),
            "reward/eval_rejected_std": float(r.std()) if n > 1 else 0.0,
            "reward/eval_length_corr": pearson(both, torch.cat(lengths).float()),
        }
