"""GRPO (Shao et al., 2024): sample a group per prompt, use each reward minus its group's mean (over its std)
as every token's advantage, and follow the clipped surrogate. `epochs` updates per rollout batch (TRL's
num_iterations): the ratio starts at 1 and the clip binds from the second update on. Groups whose rewards are
all equal teach nothing and are left out of the loss (and counted). Optional KL to the stage's `reference`
(k3, β)."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.rollouts import RolloutBatch
from trainguard.data.sources import generating
from trainguard.errors import ConfigError
from trainguard.objectives.base import OBJECTIVES, LossOutput, ObjectiveConfig, ObjectiveContext
from trainguard.objectives.policy_gradient import PolicyGradientObjective
from trainguard.rl.advantages import group_advantages, lagrangian_rewards
from trainguard.rl.forward import policy_forward
from trainguard.rl.losses import aggregate, clipped_policy_loss, kl_estimate, masked_mean
from trainguard.rl.packed import packed_policy_forward, packing_refused


class GRPOConfig(ObjectiveConfig):
    name: Literal["grpo"] = "grpo"
    clip_low: float = Field(0.2, gt=0, lt=1, description="Ratio clip below 1 (PPO's ε).")
    clip_high: float = Field(0.2, gt=0, description="Ratio clip above 1 (DAPO raises it to 0.28).")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the stage's reference policy (needs `reference`).")
    loss_type: Literal["grpo", "dapo"] = Field(
        "grpo", description="grpo: average each sequence's tokens, then sequences; dapo: average over all tokens."
    )
    scale_rewards: bool = Field(True, description="Divide by the group's std (False: Dr. GRPO's centring only).")
    epochs: int = Field(1, ge=1, description="Updates per rollout batch (TRL's num_iterations).")
    packed: bool = Field(
        False,
        description="Score rollouts in packed rows: each group's prompt once, responses without padding, logits "
        "only where a response token is predicted, no backward through groups without reward spread (out of the "
        "loss): the same loss to float rounding, with 2-3x less work.",
    )


@OBJECTIVES.register("grpo")
class GRPOObjective(PolicyGradientObjective):
    Config = GRPOConfig
    config: GRPOConfig
    kl_field = "beta"

    def __init__(self, config: GRPOConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx, config.beta)
        if config.packed and (reason := packing_refused(ctx.model)):
            raise ConfigError(f"objective.packed: this model cannot be scored packed: {reason}; set packed: false")

    def weight(self, batch: RolloutBatch) -> int:
        return batch.n_tokens if self.config.loss_type == "dapo" else batch.input_ids.shape[0]

    def plan(self, batches: list[RolloutBatch]) -> list[list[RolloutBatch]]:
        """Advantages, and what stays fixed over the epochs (the sampling policy's and the reference's log-probs)."""
        for batch in batches:
            rewards = batch.rewards
            if "costs" in batch.extras:  # a constraint's cost, charged at its λ
                rewards = lagrangian_rewards(rewards, batch.extras["costs"], batch.extras["cost_weights"])
            advantages, zero_spread = group_advantages(rewards, batch.group_size, self.config.scale_rewards)
            batch.extras["advantages"] = advantages
            batch.extras["keep"] = (~zero_spread).repeat_interleave(batch.group_size).to(batch.response_mask.dtype)
            batch.stats["rollout/frac_reward_zero_std"] = float(zero_spread.float().mean())
            if self.config.epochs == 1 and self.reference is None:
                continue  # the first update's own log-probs are the old ones: nothing to hold fixed
            on_device = batch.to(next(self.ctx.model.parameters()).device)
            if self.config.epochs > 1:
                with generating(self.ctx.model) as model:
                    batch.extras["old_logp"] = self.forward(model, on_device)[0].cpu()
            if self.reference is not None:
                with torch.no_grad():
                    batch.extras["ref_logp"] = self.forward(self.reference, on_device)[0].cpu()
        return [batches] * self.config.epochs

    def forward(self, model: nn.Module, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor, None]:
        """(B, L) log-probabilities and entropies of the rows' tokens, packed or one padded row per sample."""
        if self.config.packed:  # a group without reward spread is out of the loss (KL included): no gradient
            keep = batch.extras.get("keep")
            return packed_policy_forward(model, batch, None if keep is None else keep.bool())
        logp, entropy, _ = policy_forward(model, batch)
        return logp, entropy, None

    def loss(self, model: nn.Module, batch: RolloutBatch) -> LossOutput:
        ex = batch.extras
        mask = batch.response_mask * ex["keep"][:, None]
        logp, entropy, _ = self.forward(model, batch)
        old = ex["old_logp"] if "old_logp" in ex else logp.detach()
        policy = clipped_policy_loss(logp, old, ex["advantages"], mask, self.config.clip_low, self.config.clip_high)
        per_token = policy.per_token
        metrics = {"rl/entropy": masked_mean(entropy, batch.response_mask)}
        if "ref_logp" in ex:
            kl = kl_estimate(logp, ex["ref_logp"], "k3")
            per_token = per_token + self.config.beta * kl
            metrics["rl/kl"] = masked_mean(kl.detach(), batch.response_mask)
        units = self.weight(batch)
        terms = {"task": aggregate(per_token, mask, self.config.loss_type) * units}
        metrics |= {
            "rl/clip_frac": policy.clip_fraction,
            "rl/approx_kl": policy.approx_kl,
            "rl/ratio_mean": policy.ratio_mean,
            "rl/ratio_var": policy.ratio_var,
        }
        metrics |= self.rollout_metrics(batch)
        return LossOutput(terms, {k: v.detach().float() for k, v in metrics.items()})
