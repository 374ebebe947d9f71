"""A reward model: a causal LM's last hidden state at the last real token, through a small MLP, to one scalar.

The head is the write-up's `Linear(H, 256) → ReLU → Dropout(0.1) → Linear(256, 1)`. Positions are counted from
the first real token, so left- and right-padded batches of the same texts give the same rewards.
"""

import inspect
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from trainguard.engine.sharding import is_sharded
from trainguard.reward.data import encode_pair_texts

HEAD_KEY = "reward"  # the head's name in an export (heads/reward/); here, not in export.py, which loads models


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real token, for left or right padding. attention_mask (B, T) of 0/1."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(-1)


class RewardModel(nn.Module):
    """`base_model` (the very object passed in) encodes; `reward_head` maps its last hidden state to a reward.

    >>> rm = RewardModel(base_model, hidden_size=768)
    >>> rm(input_ids, attention_mask)            # Tensor[batch], float32
    """

    def __init__(self, base_model: nn.Module, hidden_size: int = 768, freeze_base: bool = False) -> None:
        super().__init__()
        self.base_model = base_model
        self.hidden_size = hidden_size
        self.reward_head = reward_head(hidden_size)
        actual = hidden_width(base_model)
        if actual is not None and actual != hidden_size:
            raise ValueError(f"hidden_size={hidden_size} but the base model's hidden states are {actual} wide")
        self.freeze_base = freeze_base
        if freeze_base:
            self.base_model.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = last_hidden_state(self.base_model, input_ids, attention_mask)  # (B, T, H)
        return rewards_at_last_token(hidden, attention_mask, self.reward_head)  # (B,)

    @property
    def separator(self) -> str:
        """What joins prompt and response (the head's: a space unless it was trained otherwise)."""
        return getattr(self.reward_head, "separator", " ")

    @torch.no_grad()
    def get_rewards(
        self,
        prompts: list[str],
        responses: list[str],
        tokenizer: Any,
        device: torch.device | str | None = None,
        max_length: int = 512,
    ) -> torch.Tensor:
        """Rewards (B,) of `prompt + separator + response` texts (the head's separator, a space by default), in
        eval mode, on `device`."""
        device = torch.device(device) if device is not None else next(self.parameters()).device
        was_training = self.training
        self.eval()
        ids, mask, _ = encode_pair_texts(tokenizer, prompts, responses, max_length, separator=self.separator)
        rewards = self(ids.to(device), mask.to(device))
        self.train(was_training)
        return rewards


class RewardHead(nn.Sequential):
    """`Linear(H, 256) → ReLU → Dropout(0.1) → Linear(256, 1)`: a Sequential that can also be exported
    beside a model and rebuilt from its config (`models.heads`), with the text between prompt and response
    that it was trained on (so that scoring joins them the same way)."""

    def __init__(self, hidden_size: int, inner: int = 256, dropout: float = 0.1, separator: str = " ") -> None:
        super().__init__(nn.Linear(hidden_size, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, 1))
        self.hidden_size, self.inner, self.dropout, self.separator = hidden_size, inner, dropout, separator

    def head_config(self) -> dict[str, Any]:
        return {
            "hidden_size": self.hidden_size,
            "inner": self.inner,
            "dropout": self.dropout,
            "separator": self.separator,
        }


def reward_head(hidden_size: int) -> RewardHead:
    return RewardHead(hidden_size)


def backbone(model: nn.Module) -> nn.Module:
    """The transformer without its vocabulary projection where the model has one (`base_model` of a Hugging Face
    causal LM), so that scoring never computes logits over the vocabulary; a sharded model whole, since only its
    own forward gathers the weights outside its layers (FSDP)."""
    inner = getattr(model, "base_model", None)
    whole = is_sharded(model) or not isinstance(inner, PreTrainedModel) or inner is model
    return model if whole else inner


def last_hidden_state(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, H) last-layer hidden states; positions count from each row's first real token (left padding)."""
    body = backbone(model)
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if "position_ids" in inspect.signature(body.forward).parameters:
        kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    if body is model:
        kwargs["output_hidden_states"] = True
    out = body(**kwargs)
    return out.last_hidden_state if getattr(out, "last_hidden_state", None) is not None else out.hidden_states[-1]


def rewards_at_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor, head: nn.Module) -> torch.Tensor:
    """hidden (B, T, H) -> (B,) float32 rewards from each row's last real token."""
    last = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
    return head(last.float()).squeeze(-1)


def hidden_width(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for name in ("hidden_size", "n_embd", "d_model"):
        if config is not None and isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None
