"""Tokenised examples and right-padded batches with completion masks (packed rows: data/packing.py)."""

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
    targets: list[bool] | None = None  # chat: which tokens carry loss (every assistant turn), else by prompt_len


@dataclass
class TokenBatch:
    input_ids: torch.Tensor  # (B, T) long, right-padded
    token_mask: torch.Tensor  # (B, T) bool, real tokens
    completion_mask: torch.Tensor  # (B, T) bool, completion tokens
    # Optional per-row labels from a source that mixes groups (data/mix.py): each row's task (the objective
    # reports per-task losses) and its index among that task's examples (hard-example bookkeeping). Host-side.
    tasks: tuple[str, ...] | None = None
    example_ids: tuple[int, ...] | None = None
    # Packed rows only (data/packing.py): each token's position within its own example (B, T), restarting at 0
    # where an example starts; the model keeps attention within an example, and a position 0 is never a target.
    position_ids: torch.Tensor | None = None
    # The earliest target position of the completion mask over all rows (first_target), read from the host mask
    # when the batch moves to a device, so the objective can skip the LM head before it without a device sync.
    target_start: int | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.token_mask.sum())

    def to(self, device: torch.device) -> "TokenBatch":
        ids, tokens, completion = (
            t.to(device, non_blocking=True) for t in (self.input_ids, self.token_mask, self.completion_mask)
        )
        positions = None if self.position_ids is None else self.position_ids.to(device, non_blocking=True)
        on_host = self.completion_mask.device.type == "cpu"
        start = first_target(self.completion_mask) if on_host else self.target_start
        return TokenBatch(ids, tokens, completion, self.tasks, self.example_ids, positions, start)


def first_target(mask: torch.Tensor) -> int:
    """The earliest position t >= 1 that any row of `mask` (B, T) marks, i.e. the first token some row predicts
    (from position t - 1); T when no row marks any. Syncs when `mask` is on an accelerator."""
    marked = mask[:, 1:].any(0).nonzero()  # (n, 1)
    return int(marked[0, 0]) + 1 if len(marked) else mask.shape[1]


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


def tokenize_chat(
    tokenizer: Any, messages: list[dict[str, str]], max_length: int
) -> tuple[TokenizedExample | None, bool]:
    """The conversation through the tokenizer's chat template, loss on every assistant turn (its closing
    tokens included, so the model learns to end). Too long: the earliest tokens go, never the last assistant
    turn, of which at least one token before it stays (its first token is then predicted); (None, True) when
    that does not fit, (None, False) when the template does not tokenize turn by turn (bad rows, both)."""

    def encode(upto: int, generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation_prompt)
        return tokenizer.encode(text, add_special_tokens=False)

    ids = encode(len(messages), False)
    targets = [False] * len(ids)
    last_start = len(ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before, through = encode(i, True), encode(i + 1, False)
        start = len(before)
        if through != ids[: len(through)] or through[:start] != before:
            return None, False
        targets[start : len(through)] = [True] * (len(through) - start)
        last_start = start
    cut = max(0, len(ids) - max_length)
    if last_start <= cut:
        return None, True
    ids, targets = ids[cut:], targets[cut:]
    return TokenizedExample(ids, targets.index(True) if True in targets else len(ids), targets), cut > 0


def collate(examples: list[TokenizedExample], pad_id: int) -> TokenBatch:
    width = max(len(e.ids) for e in examples)
    input_ids = torch.tensor([e.ids + [pad_id] * (width - len(e.ids)) for e in examples], dtype=torch.long)
    lengths = torch.tensor([len(e.ids) for e in examples])[:, None]  # (B, 1)
    prompt_lens = torch.tensor([e.prompt_len for e in examples])[:, None]
    pos = torch.arange(width)[None, :]  # (1, T)
    token_mask = pos < lengths
    completion = token_mask & (pos >= prompt_lens)
    if any(e.targets is not None for e in examples):  # chat rows: the assistant turns, wherever they are
        rows = [e.targets or [i >= e.prompt_len for i in range(len(e.ids))] for e in examples]
        completion = torch.tensor([r + [False] * (width - len(r)) for r in rows], dtype=torch.bool)
    return TokenBatch(input_ids, token_mask, completion)
