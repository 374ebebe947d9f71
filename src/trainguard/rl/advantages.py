"""Advantages: GAE over a response's tokens (PPO) and group-normalised sequence rewards (GRPO).

Shapes: B sequences, T response tokens, right-padded; `mask` (B, T) is 1 on real response tokens, which are
contiguous from the left. Pure functions: tensors in, tensors out."""

import torch


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016), per token.

    δ_t = r_t + γ·V_{t+1} − V_t, with V past the last real token taken as 0 (the episode ends there), and
    A_t = δ_t + γλ·A_{t+1}. Returns (advantages, returns = advantages + values), both zero on padding.
    rewards, values, mask: (B, T).
    """
    mask = mask.to(values.dtype)
    B, T = rewards.shape
    advantages = torch.zeros_like(values)
    running = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):
        alive_next = mask[:, t + 1] if t + 1 < T else torch.zeros_like(running)  # 0: t is the last token
        next_value = values[:, t + 1] * alive_next if t + 1 < T else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running * alive_next) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over the masked entries (PPO's advantage normalisation); padding stays 0."""
    mask = mask.to(x.dtype)
    n = mask.sum().clamp(min=1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: bool = True, eps: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO's advantages: each reward minus its group's mean, divided by the group's std (unbiased, as in
    TRL) when `scale`. rewards (B,) with B = groups × group_size, each group contiguous.
    Returns (advantages (B,), zero_spread (groups,) bool): a group whose rewards are all equal teaches nothing
    (its advantages are 0) and is reported, so that the caller can skip and count it."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size).float()  # (groups, G)
    mean = grouped.mean(-1, keepdim=True)
    std = grouped.std(-1, keepdim=True) if group_size > 1 else torch.zeros_like(mean)
    zero_spread = (grouped.max(-1).values - grouped.min(-1).values) == 0
    centred = grouped - mean
    advantages = centred / (std + eps) if scale else centred
    return advantages.view(-1).to(rewards.dtype), zero_spread


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 − Var(returns − values) / Var(returns) over the masked tokens: 1 is a perfect critic, ≤ 0 a useless one."""
    m = mask.bool()
    target = returns[m].float()
    var = target.var(unbiased=False)
    if var == 0:
        return float("nan")
    return float(1 - (target - values[m].float()).var(unbiased=False) / var)


def lagrangian_rewards(rewards: torch.Tensor, costs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(r − Σ_k λ_k c_k) / (1 + Σ_k λ_k): the reward a constrained policy follows, scaled so that a growing λ
    shifts weight from the reward to the costs instead of inflating the advantages. rewards (B,); costs and
    weights (λ per row) (B, K)."""
    return (rewards.float() - (costs * weights).sum(-1)) / (1 + weights.sum(-1))
