"""The policy-gradient losses with every term named (CleanRL's style): the clipped surrogate, the clipped value
loss, the KL penalty's estimators, entropy, and how token losses become one number (per sequence or per token).

Shapes: (B, T) over response tokens with a 0/1 `mask`; log-probabilities are of the sampled tokens."""

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: Literal["k1", "k3"] = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples of π (Schulman, "Approximating KL divergence", 2020).

    k1 = log π − log π_ref: unbiased, high variance, can be negative per token.
    k3 = (r − 1) − log r with r = π_ref / π: unbiased, never negative, lower variance (GRPO's choice)."""
    if estimator == "k1":
        return logp - ref_logp
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


@dataclass
class PolicyLoss:
    per_token: torch.Tensor  # (B, T) the clipped surrogate, to be aggregated
    clip_fraction: torch.Tensor  # share of tokens where the clipped term was the larger (the step was cut)
    approx_kl: torch.Tensor  # mean of (ratio − 1) − log ratio: KL(π_old ‖ π), for early stopping
    ratio_mean: torch.Tensor
    ratio_var: torch.Tensor


def clipped_policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float | None = None,
) -> PolicyLoss:
    """PPO's clipped surrogate (Schulman et al., 2017), with the asymmetric clip of DAPO when `clip_high` is set.

    pg_loss1 = −A·r, pg_loss2 = −A·clip(r, 1 − ε_low, 1 + ε_high), loss = max(pg_loss1, pg_loss2), r = π/π_old.
    `advantages` is (B, T), or (B,) for one advantage per sequence (GRPO)."""
    if advantages.dim() == 1:
        advantages = advantages[:, None].expand_as(logp)
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    high = clip_low if clip_high is None else clip_high
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + high)
    per_token = torch.maximum(pg_loss1, pg_loss2)
    with torch.no_grad():
        clip_fraction = masked_mean((pg_loss2 > pg_loss1).float(), mask)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask)
        ratio_mean = masked_mean(ratio, mask)
        ratio_var = masked_mean((ratio - ratio_mean) ** 2, mask)
    return PolicyLoss(per_token, clip_fraction, approx_kl, ratio_mean, ratio_var)


def clipped_value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """½·max((V − R)², (V_clipped − R)²), V_clipped = V_old + clip(V − V_old, ±clip): the critic may not move far
    from the values the advantages were computed with (PPO2's value clipping). Returns the masked mean."""
    v_loss_unclipped = (values - returns) ** 2
    if clip is None:
        return 0.5 * masked_mean(v_loss_unclipped, mask)
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    v_loss_clipped = (v_clipped - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(v_loss_unclipped, v_loss_clipped), mask)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits -> (B, T) entropy of each next-token distribution, in nats."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: Literal["grpo", "dapo"]) -> torch.Tensor:
    """One number from token losses: `grpo` averages each sequence's tokens, then the sequences (every
    sequence weighs the same, so long ones count less per token); `dapo` averages over all tokens of the batch
    (every token weighs the same: DAPO's token-level loss, which stops long answers being under-weighted)."""
    mask = mask.to(per_token.dtype)
    if mode == "dapo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    per_sequence = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_sequence.mean()
