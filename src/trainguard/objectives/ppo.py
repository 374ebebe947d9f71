"""PPO (Schulman et al., 2017) for language models, as in Ziegler et al. (2019) and TRL: a value head on the
policy's hidden states, a per-token KL penalty to the reference folded into the rewards, GAE, whitened
advantages, and `ppo_epochs` passes over shuffled minibatches of each rollout batch, stopped early when the
policy moved past `target_kl`. Everything the passes hold fixed (old log-probs, values, advantages, returns)
is computed once, in `plan`, with the policy that sampled."""

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.rollouts import RolloutBatch
from trainguard.data.sources import generating
from trainguard.engine.optim import ParamGroupSection
from trainguard.objectives.base import OBJECTIVES, LossOutput, ObjectiveConfig, ObjectiveContext
from trainguard.objectives.policy_gradient import PolicyGradientObjective
from trainguard.reward.model import hidden_width
from trainguard.rl.advantages import explained_variance, gae, whiten
from trainguard.rl.forward import policy_forward, reference_logprobs
from trainguard.rl.losses import clipped_policy_loss, clipped_value_loss, kl_estimate, masked_mean


class PPOConfig(ObjectiveConfig):
    name: Literal["ppo"] = "ppo"
    clip_range: float = Field(0.2, gt=0, lt=1, description="Ratio clip ε of the surrogate.")
    clip_range_value: float | None = Field(0.2, gt=0, description="Value clip around the old values (null: none).")
    vf_coef: float = Field(0.5, ge=0, description="Weight of the value loss.")
    entropy_coef: float = Field(0.01, ge=0, description="Weight of the entropy bonus.")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount of GAE.")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="λ of GAE.")
    kl_coef: float = Field(0.0, ge=0, description="Per-token KL penalty to the reference (needs `reference`).")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="Estimator of the per-token KL penalty.")
    whiten_advantages: bool = Field(True, description="Normalise advantages over the batch's response tokens.")
    ppo_epochs: int = Field(4, ge=1, description="Passes over each rollout batch.")
    num_minibatches: int = Field(1, ge=1, description="Minibatches per pass (each one optimizer update).")
    target_kl: float | None = Field(None, gt=0, description="Stop a step's passes once approx-KL passes this.")
    value_hidden: int = Field(0, ge=0, description="Width of the value head's inner layer (0: the model's).")
    value_lr_mult: float = Field(1.0, gt=0, description="The value head's LR as a multiple of the stage's.")


class ValueHead(nn.Sequential):
    """The critic: a 2-layer MLP on the policy's last hidden state, one value per position."""

    def __init__(self, hidden_size: int, inner: int) -> None:
        super().__init__(nn.Linear(hidden_size, inner), nn.Tanh(), nn.Linear(inner, 1))

    def head_config(self) -> dict[str, int]:
        return {"hidden_size": self[0].in_features, "inner": self[0].out_features}


@OBJECTIVES.register("ppo")
class PPOObjective(PolicyGradientObjective):
    Config = PPOConfig
    config: PPOConfig
    early_stop_key = "rl/approx_kl"

    def __init__(self, config: PPOConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx, config.kl_coef)
        width = hidden_width(ctx.model)
        assert width is not None, "the policy's config names no hidden size"
        inner = config.value_hidden or width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the heads' start depends on nothing but their shape
            self.value_head = ValueHead(width, inner).to(ctx.device)
            # PPO-Lagrangian: a critic per constraint cost the stage's plug-ins supply
            self.cost_heads = {name: ValueHead(width, inner).to(ctx.device) for name in ctx.costs}

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"value_head": self.value_head, **{f"cost_critic_{k}": h for k, h in self.cost_heads.items()}}

    def param_group_defaults(self) -> dict[str, ParamGroupSection]:
        group = ParamGroupSection(lr_mult=self.config.value_lr_mult, weight_decay=0.0)
        return dict.fromkeys(self.trainable_modules(), group)

    def weight(self, batch: RolloutBatch) -> int:
        return int(batch.response_mask.sum())

    def values(self, states: torch.Tensor, head: nn.Module | None = None) -> torch.Tensor:
        return (head or self.value_head)(states.float()).squeeze(-1)

    @torch.no_grad()
    def prepare(self, batch: RolloutBatch) -> None:
        """Old log-probs and values, KL-penalised token rewards (the sequence reward on its last token), GAE; with
        constraint costs, a GAE per cost critic and the actor's advantage (A_r − Σ λ_k A_k) / (1 + Σ λ_k)."""
        c, mask = self.config, batch.response_mask.float()
        device = next(self.ctx.model.parameters()).device
        on_device = batch.to(device)
        with generating(self.ctx.model) as model:
            old_logp, _, states = policy_forward(model, on_device, hidden=True)
            assert states is not None
            old_values = (self.values(states) * on_device.response_mask).cpu()
            cost_values = [(self.values(states, h) * on_device.response_mask).cpu() for h in self.cost_heads.values()]
        old_logp = old_logp.cpu()
        rewards = torch.zeros_like(mask)
        if self.reference is not None:
            kl = kl_estimate(old_logp, reference_logprobs(self.reference, on_device).cpu(), c.kl_estimator) * mask
            rewards -= c.kl_coef * kl
            batch.stats["rl/kl"] = float(masked_mean(kl, mask))
        last = (mask * torch.arange(mask.shape[1])).argmax(1)  # each row's last response token
        rows = torch.arange(mask.shape[0])
        rewards[rows, last] += batch.rewards.float()
        advantages, returns = gae(rewards, old_values, mask, c.gamma, c.gae_lambda)
        batch.stats["rl/explained_variance"] = explained_variance(old_values, returns, mask)
        batch.stats["rl/value_mean"] = float(masked_mean(old_values, mask))
        if cost_values:
            advantages, cost_returns = self.lagrangian(batch, advantages, cost_values, mask, rows, last)
            batch.extras |= {"old_cost_values": torch.stack(cost_values, -1), "cost_returns": cost_returns}
        if c.whiten_advantages:
            advantages = whiten(advantages, mask)
        batch.extras |= {"old_logp": old_logp, "old_values": old_values, "advantages": advantages, "returns": returns}

    def lagrangian(
        self,
        batch: RolloutBatch,
        advantages: torch.Tensor,
        cost_values: list[torch.Tensor],
        mask: torch.Tensor,
        rows: torch.Tensor,
        last: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A_r − Σ λ_k A_k) / (1 + Σ λ_k) (B, L), and each cost critic's returns (B, L, K)."""
        c, weights = self.config, batch.extras["cost_weights"]  # (B, K) λ per row
        charged, cost_returns = advantages.clone(), []
        for k, values in enumerate(cost_values):
            costs = torch.zeros_like(mask)
            costs[rows, last] = batch.extras["costs"][:, k]
            cost_adv, ret = gae(costs, values, mask, c.gamma, c.gae_lambda)
            charged -= weights[:, k, None] * cost_adv
            cost_returns.append(ret)
        return charged / (1 + weights.sum(-1, keepdim=True)), torch.stack(cost_returns, -1)

    def plan(self, batches: list[RolloutBatch]) -> list[list[RolloutBatch]]:
        """ppo_epochs × num_minibatches updates, each over a shuffle drawn from the step's sampling seed."""
        for batch in batches:
            self.prepare(batch)
        updates = []
        for epoch in range(self.config.ppo_epochs):
            shuffles = []
            for k, batch in enumerate(batches):
                gen = torch.Generator().manual_seed(batch.seed * 997 + epoch * 31 + k)
                shuffles.append(torch.randperm(batch.input_ids.shape[0], generator=gen))
            for m in range(self.config.num_minibatches):
                update = []
                for batch, order in zip(batches, shuffles, strict=True):
                    rows = order.chunk(self.config.num_minibatches)[m] if m < len(order) else order[:0]
                    if len(rows):
                        update.append(batch.select(rows))
                updates.append(update)
        return [u for u in updates if u]

    def stop_early(self, value: float) -> bool:
        return self.config.target_kl is not None and value > self.config.target_kl

    def loss(self, model: nn.Module, batch: RolloutBatch) -> LossOutput:
        c, ex, mask = self.config, batch.extras, batch.response_mask
        logp, entropy, states = policy_forward(model, batch, hidden=True)
        assert states is not None
        values = self.values(states)
        policy = clipped_policy_loss(logp, ex["old_logp"], ex["advantages"], mask, c.clip_range)
        value_loss = clipped_value_loss(values, ex["old_values"], ex["returns"], mask, c.clip_range_value)
        units = self.weight(batch)
        terms = {
            "task": (policy.per_token * mask).sum(),
            "value": c.vf_coef * value_loss * units,
            "entropy": -c.entropy_coef * (entropy * mask).sum(),
        }
        for k, head in enumerate(self.cost_heads.values()):
            cost_loss = clipped_value_loss(
                self.values(states, head),
                ex["old_cost_values"][..., k],
                ex["cost_returns"][..., k],
                mask,
                c.clip_range_value,
            )
            terms["value"] = terms["value"] + c.vf_coef * cost_loss * units
        metrics = {
            "rl/entropy": masked_mean(entropy, mask),
            "rl/value_loss": value_loss.detach(),
            "rl/clip_frac": policy.clip_fraction,
            "rl/approx_kl": policy.approx_kl,
            "rl/ratio_mean": policy.ratio_mean,
            "rl/ratio_var": policy.ratio_var,
        }
        metrics |= self.rollout_metrics(batch)
        return LossOutput(terms, {k: v.detach().float() for k, v in metrics.items()})
