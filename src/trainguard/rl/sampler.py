"""Group sampling with less work than `generate`: each distinct prompt is prefilled once and its KV cache
repeated for the group's samples, and a sample that has emitted EOS leaves the batch, so every decoding step
runs only the rows still writing. (HF `generate` prefills all B = U·G rows and decodes every row to the
longest response.) Temperature, nucleus (top-p) and greedy decoding as `generate` does them; the random draws
come from torch's global generator, so a seeded step samples the same responses every time."""

import inspect

import torch
from torch import nn
from transformers import DynamicCache

from trainguard.rl.masks import additive


@torch.inference_mode()  # not only no_grad: no view or version tracking either (~20% of a tiny model's step)
def sample_groups(
    model: nn.Module,
    prompts: list[list[int]],
    group: int,
    max_new_tokens: int,
    eos: int,
    pad: int,
    temperature: float | None = None,
    top_p: float = 1.0,
) -> list[list[int]]:
    """`group` responses to each prompt (rows ordered prompt by prompt), each up to and including its EOS."""
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention = torch.zeros_like(ids)
    for row, p in enumerate(prompts):  # left-padded: every prompt ends where decoding starts
        ids[row, width - len(p) :], attention[row, width - len(p) :] = torch.tensor(p), 1
    ids, attention = ids.to(device), attention.to(device)
    positions = (attention.cumsum(1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)  # transformers >= 4.56
    cache_key = _cache_name(model)
    with_cache = {cache_key: cache, "use_cache": True}
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril()
    prefill = additive(
        (causal[None] & attention.bool()[:, None, :])[:, None] | torch.eye(width, dtype=torch.bool, device=device),
        model,
    )  # a padding query reads itself: no empty row
    out = model(input_ids=ids, attention_mask=prefill, position_ids=positions, logits_to_keep=1, **with_cache)
    if cache.get_seq_length() != width:
        raise RuntimeError(f"source.sampler: grouped: the model left its KV cache empty (passed as {cache_key!r})")
    cache.batch_repeat_interleave(group)
    logits = out.logits[:, -1].repeat_interleave(group, 0)
    readable = attention.bool().repeat_interleave(group, 0)  # (rows, keys in the cache): padding is not
    position = positions[:, -1].repeat_interleave(group, 0)
    alive = torch.arange(len(prompts) * group, device=device)
    responses: list[list[int]] = [[] for _ in range(len(prompts) * group)]
    for step in range(max_new_tokens):
        token = _next_token(logits, temperature, top_p)
        for row, t in zip(alive.tolist(), token.tolist(), strict=True):
            responses[row].append(t)
        going = token != eos
        if step == max_new_tokens - 1 or not going.any():
            break
        if not going.all():  # finished samples leave the batch and its cache
            keep = going.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, token, readable, position = alive[keep], token[keep], readable[keep], position[keep]
        readable = torch.cat([readable, readable.new_ones(len(alive), 1)], 1)
        position = position + 1
        mask = additive(readable[:, None, None, :], model)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position[:, None], **with_cache)
        logits = out.logits[:, -1]
    return responses


def _cache_name(model: nn.Module) -> str:
    """The keyword the model takes its KV cache by: `cache` in newer transformers, `past_key_values` before."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper's model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _next_token(logits: torch.Tensor, temperature: float | None, top_p: float) -> torch.Tensor:
    """Greedy without a temperature; otherwise a draw from the tempered distribution cut to its top-p mass
    (the most likely token always stays)."""
    if temperature is None:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_p < 1.0:
        ranked, order = logits.sort(-1, descending=True)
        mass_before = ranked.softmax(-1).cumsum(-1) - ranked.softmax(-1)
        ranked = ranked.masked_fill(mass_before >= top_p, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ranked)
    return torch.multinomial(logits.softmax(-1), 1).squeeze(1)
