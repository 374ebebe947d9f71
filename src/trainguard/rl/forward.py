"""One forward pass of the policy over rollout rows: each token's log-probability, entropy and (for a critic)
the hidden state it was predicted from; and the held-out greedy evaluation every RL objective reports."""

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trainguard.data.rollouts import RolloutBatch
from trainguard.rl.losses import entropy_from_logits


def policy_forward(
    model: nn.Module, batch: RolloutBatch, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(B, L) log π(x_t | x_<t) and (B, L) entropy of that distribution (both 0 at t = 0), and with `hidden`
    the (B, L, H) last-layer state each token was predicted from (shifted the same way: state t−1 at t)."""
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=hidden)
    logits = out.logits[:, :-1]  # (B, L-1, V): position t predicts token t+1
    logp = torch.gather(F.log_softmax(logits.float(), -1), -1, batch.input_ids[:, 1:, None]).squeeze(-1)
    pad = logp.new_zeros(logp.shape[0], 1)
    entropy = torch.cat([pad, entropy_from_logits(logits.detach())], 1)
    states = None
    if hidden:
        last = out.hidden_states[-1]
        states = torch.cat([last.new_zeros(last.shape[0], 1, last.shape[-1]), last[:, :-1]], 1)
    return torch.cat([pad, logp], 1), entropy, states


def reference_logprobs(reference: Any, batch: RolloutBatch) -> torch.Tensor:
    """The frozen reference's (B, L) log-probabilities of the same tokens."""
    with torch.no_grad():
        return policy_forward(reference, batch)[0]


@torch.no_grad()
def heldout_metrics(model: nn.Module, tokenizer: Any, held: list[Any]) -> dict[str, float]:
    """Greedy answers to held-out prompts (or greedy episodes on held-out seeds), scored by the task's verifier
    (or the environment): `eval/accuracy` (share solved) and `eval/reward_mean` (mean score or return), what
    `best/` and the curves are judged by in RL."""
    scores = [pair for part in held for pair in part.scores(model, tokenizer)]
    n = max(len(scores), 1)
    return {
        "eval/accuracy": sum(ok for _, ok in scores) / n,
        "eval/reward_mean": sum(v for v, _ in scores) / n,
        "eval/n": float(len(scores)),
    }
