"""The Bradley-Terry pairwise loss: P(chosen ≻ rejected) = σ(r_c − r_r), trained by its negative log."""

import torch
import torch.nn.functional as F


def compute_reward_loss(
    reward_chosen: torch.Tensor,
    reward_rejected: torch.Tensor,
    margin: float | torch.Tensor = 0.0,
    center_coef: float = 0.0,
) -> torch.Tensor:
    """mean(−log σ(r_c − r_r − margin)) + center_coef · mean((r_c + r_r)²).

    `logsigmoid` keeps it finite for any gap (equal rewards give log 2 ≈ 0.693). A `margin` (scalar or per pair,
    as in Llama 2's reward models) asks for a gap of at least that much; the centring term (as in
    Eisenstein et al., 2023) keeps rewards near zero, since the pairwise loss alone leaves their offset free.
    """
    gap = reward_chosen.float() - reward_rejected.float() - margin
    loss = -F.logsigmoid(gap).mean()
    if center_coef:
        loss = loss + center_coef * (reward_chosen.float() + reward_rejected.float()).pow(2).mean()
    return loss
