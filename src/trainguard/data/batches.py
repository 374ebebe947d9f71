"""Tokenised examples and right-padded batches with completion masks."""

from dataclasses import dataclass
from typing import Any, Protocol

import torch


class Batch(Protocol):
    """What the engine needs of a micro-batch: moving it to the device and its token count. Batches that
    also carry `input_ids` and `token_mask` (B, T) get the data checks and the batch faults; a `texts`
    list, when present, is checked instead of decoding the ids. Loss units come from the objective's
    `weight(batch)`, since they depend on the loss (completion tokens, pairs, episodes)."""

    def to(self, device: torch.device) -> "Batch": ...

    @property
    def n_tokens(self) -> int: ...


@dataclass
class TokenizedExample:
    ids: list[int]
    prompt_len: int  # ids[:prompt_len] are the prompt (with BOS), the rest the completion (with EOS)


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, T) long, right-padded
    token_mask: torch.Tensor  # (B, T) bool, real tokens
    completion_mask: torch.Tensor  # (B, T) bool, completion tokens

    @property
    def n_tokens(self) -> int:
        return int(self.token_mask.sum())

    def to(self, device: torch.device) -> "TokenBatch":
        return TokenBatch(
            *(t.to(device, non_blocking=True) for t in (self.input_ids, self.token_mask, self.completion_mask))
        )


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer itself puts before a text (<bos> for Llama and the byte tokenizer, nothing for
    GPT-2). Training and evaluation add exactly these, so the exported tokenizer reproduces them."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a", add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


def tokenize_record(
    tokenizer: Any, record: dict[str, str], max_length: int, prefix: list[int]
) -> tuple[TokenizedExample | None, bool]:
    """prefix + prompt + completion + EOS. Too long: the prompt loses tokens from its left, never the
    completion; (None, True) when the completion does not fit beside one prompt token (a bad row)."""
    prompt = tokenizer.encode(record["prompt"], add_special_tokens=False)
    completion = [*tokenizer.encode(record["completion"], add_special_tokens=False), tokenizer.eos_token_id]
    room = max_length - len(prefix) - len(completion)
    if room < 1:
        return None, True
    cut = len(prompt) > room
    if cut:
        prompt = prompt[-room:]
    return TokenizedExample([*prefix, *prompt, *completion], len(prefix) + len(prompt)), cut


def collate(examples: list[TokenizedExample], pad_id: int) -> TokenBatch:
    width = max(len(e.ids) for e in examples)
    input_ids = torch.tensor([e.ids + [pad_id] * (width - len(e.ids)) for e in examples], dtype=torch.long)
    lengths = torch.tensor([len(e.ids) for e in examples])[:, None]  # (B, 1)
    prompt_lens = torch.tensor([e.prompt_len for e in examples])[:, None]
    pos = torch.arange(width)[None, :]  # (1, T)
    token_mask = pos < lengths
    return TokenBatch(input_ids, token_mask, token_mask & (pos >= prompt_lens))
