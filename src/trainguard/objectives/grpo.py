"""GRPO (Shao et al., 2024): sample a group per prompt, use each reward minus its group's mean (over its std)
as every token's advantage, and follow the clipped surrogate. One update per rollout batch here, so the ratio
starts at 1 and the clip binds only within a step; groups whose rewards are all equal teach nothing and are
left out of the loss (and counted). Optional KL to the stage's `reference` (k3, β)."""

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from trainguard.data import rollouts  # noqa: F401  (registers the "rollouts" source, this objective's default)
from trainguard.data.rollouts import RolloutBatch
from trainguard.objectives.base import OBJECTIVES, LossOutput, Objective, ObjectiveConfig
from trainguard.rl.advantages import group_advantages
from trainguard.rl.losses import aggregate, clipped_policy_loss, entropy_from_logits, kl_estimate, masked_mean


class GRPOConfig(ObjectiveConfig):
    name: Literal["grpo"] = "grpo"
    clip_low: float = Field(0.2, gt=0, lt=1, description="Ratio clip below 1 (PPO's ε).")
    clip_high: float = Field(0.2, gt=0, description="Ratio clip above 1 (DAPO raises it to 0.28).")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the stage's reference policy (0: none needed).")
    loss_type: Literal["grpo", "dapo"] = Field(
        "grpo", description="grpo: average each sequence's tokens, then sequences; dapo: average over all tokens."
    )
    scale_rewards: bool = Field(True, description="Divide by the group's std (False: Dr. GRPO's centring only).")


def token_logprobs(model: nn.Module, batch: RolloutBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) log-probability of each token given the ones before it (0 at position 0), and (B, L) entropy."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, :-1]  # (B, L-1, V)
    logp = torch.gather(F.log_softmax(logits.float(), -1), -1, batch.input_ids[:, 1:, None]).squeeze(-1)
    pad = logp.new_zeros(logp.shape[0], 1)
    return torch.cat([pad, logp], 1), torch.cat([pad, entropy_from_logits(logits.detach())], 1)


@OBJECTIVES.register("grpo")
class GRPOObjective(Objective):
    Config = GRPOConfig
    config: GRPOConfig
    default_source = "rollouts"
    best_metric = "rollout/reward_mean"
    best_mode = "max"

    def weight(self, batch: RolloutBatch) -> int:
        return batch.n_tokens if self.config.loss_type == "dapo" else batch.input_ids.shape[0]

    def loss(self, model: nn.Module, batch: RolloutBatch) -> LossOutput:
        advantages, zero_spread = group_advantages(batch.rewards, batch.group_size, self.config.scale_rewards)
        keep = (~zero_spread).repeat_interleave(batch.group_size).to(batch.response_mask.dtype)  # (B,)
        mask = batch.response_mask * keep[:, None]
        logp, entropy = token_logprobs(model, batch)
        policy = clipped_policy_loss(logp, logp.detach(), advantages, mask, self.config.clip_low, self.config.clip_high)
        per_token = policy.per_token
        metrics = {"rl/entropy": masked_mean(entropy, batch.response_mask)}
        reference = self.ctx.companions.get("reference")
        if reference is not None:
            with torch.no_grad():
                ref_logp, _ = token_logprobs(reference, batch)
            kl = kl_estimate(logp, ref_logp, "k3")
            per_token = per_token + self.config.beta * kl
            metrics["rl/kl"] = masked_mean(kl.detach(), batch.response_mask)
        units = self.weight(batch)
        terms = {"task": aggregate(per_token, mask, self.config.loss_type) * units}
        rewards = batch.rewards.float()
        metrics |= {
            "rollout/reward_mean": rewards.mean(),
            "rollout/reward_std": rewards.std() if rewards.numel() > 1 else rewards.new_zeros(()),
            "rollout/frac_reward_zero_std": zero_spread.float().mean(),
            "rl/clip_frac": policy.clip_fraction,
            "rl/approx_kl": policy.approx_kl,
        }
        metrics |= {k: torch.tensor(v) for k, v in batch.stats.items()}
        return LossOutput(terms, {k: v.detach().float() for k, v in metrics.items()})
