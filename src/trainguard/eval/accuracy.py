"""Held-out task accuracy: greedy generation (KV cache) on instances the model never trained on."""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from trainguard.data.batches import special_prefix
from trainguard.tasks import Instance, Task

HELDOUT_START = 1_000_000_000  # eval ids start here; training sources use small ids


@dataclass
class AccuracyResult:
    task: str
    n: int
    correct: int
    accuracy: float
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def heldout_instances(
    task: Task, n: int, exclude_prompts: set[str] | frozenset[str], start: int = HELDOUT_START
) -> list[Instance]:
    """`n` instances with ids from `start` (HELDOUT_START) on, skipping any whose prompt appears in training."""
    out: list[Instance] = []
    i = start
    while len(out) < n and i < start + 100 * n:
        inst = task.instance(i)
        if inst.prompt not in exclude_prompts:
            out.append(inst)
        i += 1
    return out


@torch.no_grad()
def encode_prompts(tokenizer: Any, prompts: list[str], chat: bool) -> list[list[int]]:
    """Prompts as training saw them: after the tokenizer's own prefix, or (chat data) as a user turn through
    the chat template, with the assistant's turn opened."""
    if chat:
        turns = [[{"role": "user", "content": p}] for p in prompts]
        texts = [tokenizer.apply_chat_template(t, tokenize=False, add_generation_prompt=True) for t in turns]
        return [tokenizer.encode(text, add_special_tokens=False) for text in texts]
    prefix = special_prefix(tokenizer)
    return [prefix + tokenizer.encode(p, add_special_tokens=False) for p in prompts]


def generate_text(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    temperature: float | None = None,
    chat: bool = False,
) -> list[str]:
    """Left-padded batched decoding (greedy, or sampling at `temperature`); text up to the first EOS."""
    responses = generate_ids(model, tokenizer, encode_prompts(tokenizer, prompts, chat), max_new_tokens, temperature)
    eos = tokenizer.eos_token_id
    return [tokenizer.decode(r[:-1] if r and r[-1] == eos else r, skip_special_tokens=True) for r in responses]


def answer_all(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    chat: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> list[str]:
    """Greedy answers to every prompt, `batch_size` at a time with the model in eval mode (its mode restored
    after); `on_batch(answered so far)` after each batch drives a progress bar."""
    was_training = model.training
    model.eval()
    answers: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            answers += generate_text(model, tokenizer, prompts[start : start + batch_size], max_new_tokens, chat=chat)
            if on_batch is not None:
                on_batch(len(answers))
    finally:
        model.train(was_training)
    return answers


def generate_ids(
    model: nn.Module,
    tokenizer: Any,
    encoded: list[list[int]],
    max_new_tokens: int,
    temperature: float | None = None,
    top_p: float | None = None,
) -> list[list[int]]:
    """Left-padded batched decoding with the KV cache (greedy, or sampling at `temperature`); each response's
    token ids up to and including its first EOS."""
    device = next(model.parameters()).device
    width = max(len(e) for e in encoded)
    input_ids = torch.full((len(encoded), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros_like(input_ids)
    for row, ids in enumerate(encoded):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=temperature is not None,
        temperature=temperature,
        top_k=None,
        top_p=top_p,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    eos = tokenizer.eos_token_id
    return [row[: row.index(eos) + 1] if eos in row else row for row in out[:, width:].tolist()]


def task_accuracy(
    model: nn.Module,
    tokenizer: Any,
    task: Task,
    instances: list[Instance],
    max_new_tokens: int,
    batch_size: int,
    keep_examples: int = 5,
    chat: bool = False,
) -> AccuracyResult:
    responses = answer_all(model, tokenizer, [i.prompt for i in instances], max_new_tokens, batch_size, chat)
    correct, examples = 0, []
    for inst, response, score in zip(instances, responses, task.score_many(instances, responses), strict=True):
        correct += score.value == 1.0
        if len(examples) < keep_examples:
            examples.append({"prompt": inst.prompt, "response": response, "score": score.value})
    n = len(instances)
    return AccuracyResult(task.name, n, correct, correct / n if n else 0.0, examples)
