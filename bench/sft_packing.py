"""SFT tokens/s with packing on and off, on a mixed-length dataset (mostly short examples, a long tail).

Two copies of the same tiny model, the same AdamW, the same record stream (RecordSource, the same seed): one
collates an example per padded row, the other packs each batch's examples into rows of up to --max-length tokens
(data/packing.py). Steps alternate between the two (who goes first rotates), so both see the same machine load.
A step is the SFT objective's forward and backward, the clip and the optimizer step. Tokens are real (not padding)
tokens; since both arms train on the same examples, their step losses must agree, and so must each example's loss
in the first batch (read from its span of the packed rows). Run: `python bench/sft_packing.py [--steps 30]`."""

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from engine_overhead import cpu_name  # a sibling script: bench/ is on the path when run as one
from trainguard.config import ModelSection, OptimizerSection
from trainguard.data.batches import TokenBatch, TokenizedExample, collate
from trainguard.data.packing import example_spans, pack
from trainguard.data.sources import RecordSource, tokenize_all
from trainguard.engine.optim import build_optimizer
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective
from trainguard.tasks import build_task

LR, CLIP = 3e-3, 1.0


def mixed_records(n: int, long_share: float) -> list[dict[str, str]]:
    """Reversal records: most words 1-8 characters, `long_share` of them 24-56 (a long tail, as in chat data)."""
    short = build_task("reverse", {"min_len": 1, "max_len": 8})
    long = build_task("reverse", {"min_len": 24, "max_len": 56})
    n_long = round(n * long_share)
    return [long.record(i) for i in range(n_long)] + [short.record(i) for i in range(n - n_long)]


def step(objective: SFTObjective, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: TokenBatch) -> float:
    """One SFT update: forward, token-mean loss, backward, clip, AdamW."""
    out = objective.loss(model, batch)
    loss = out.total / max(objective.weight(batch), 1)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


@torch.no_grad()
def example_loss_gap(model: torch.nn.Module, examples: list[TokenizedExample], pad: int, max_length: int) -> float:
    """The largest difference between an example's mean completion CE alone (its own padded row) and packed."""
    plain, packed = collate(examples, pad), pack(examples, pad, max_length)
    alone = model(input_ids=plain.input_ids).logits
    together = model(input_ids=packed.input_ids, position_ids=packed.position_ids, use_cache=False).logits
    gap = 0.0
    for i, (r, s, n) in enumerate(example_spans(examples, max_length)):
        a_t = plain.input_ids[i, 1:n].masked_fill(~plain.completion_mask[i, 1:n], -100)
        p_t = packed.input_ids[r, s + 1 : s + n].masked_fill(~packed.completion_mask[r, s + 1 : s + n], -100)
        a = F.cross_entropy(alone[i, : n - 1], a_t, ignore_index=-100)
        p = F.cross_entropy(together[r, s : s + n - 1], p_t, ignore_index=-100)
        gap = max(gap, abs(float(a) - float(p)))
    return gap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per arm")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=32, help="examples per step (both arms)")
    ap.add_argument("--max-length", type=int, default=128, help="tokenizer.max_length: the packed row length")
    ap.add_argument("--long-share", type=float, default=0.2, help="share of long examples in the data")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    total = args.steps + args.warmup

    tok = byte_tokenizer()
    examples = tokenize_all(mixed_records(4000, args.long_share), tok, args.max_length).examples
    init = build_model(ModelSection(preset=args.preset), tok, args.max_length, seed=0)
    arms = {
        "unpacked": RecordSource(examples, args.batch_size, 0, tok.pad_token_id),
        "packed": RecordSource(examples, args.batch_size, 0, tok.pad_token_id, pack_to=args.max_length),
    }
    models = {name: copy.deepcopy(init).train() for name in arms}
    optimizers = {name: build_optimizer({"model": models[name]}, OptimizerSection(lr=LR)) for name in arms}
    objectives = {name: SFTObjective(SFTConfig(), ObjectiveContext(models[name], tok)) for name in arms}
    first = [examples[arms["packed"].sample_index(i)] for i in range(args.batch_size)]
    gap = example_loss_gap(init.eval(), first, tok.pad_token_id, args.max_length)

    names = list(arms)
    tokens_per_s: dict[str, list[float]] = {n: [] for n in names}
    losses: dict[str, list[float]] = {n: [] for n in names}
    positions: dict[str, list[int]] = {n: [] for n in names}
    tokens: dict[str, list[int]] = {n: [] for n in names}
    for i in range(total):
        for name in names[i % 2 :] + names[: i % 2]:  # rotate who goes first
            batch = arms[name].next_batch()
            t0 = time.perf_counter()
            loss = step(objectives[name], models[name], optimizers[name], batch)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                tokens_per_s[name].append(batch.n_tokens / dt)
                losses[name].append(loss)
                positions[name].append(batch.input_ids.numel())
                tokens[name].append(batch.n_tokens)
    med = {n: statistics.median(v) for n, v in tokens_per_s.items()}
    real = sum(len(e.ids) for e in examples) / len(examples)
    result = {
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)",
        "torch": torch.__version__,
        "model": f"{args.preset}, {sum(p.numel() for p in init.parameters())} parameters",
        "data": f"{len(examples)} reversals, {args.long_share:.0%} long; mean {real:.1f} tokens, "
        f"max_length {args.max_length}",
        "batch": f"{args.batch_size} examples a step",
        "timed_steps": args.steps,
        "positions_per_step": {n: round(statistics.mean(v)) for n, v in positions.items()},
        "padding_share": {n: round(1 - sum(tokens[n]) / sum(positions[n]), 3) for n in names},
        "median_tokens_per_s": {n: round(v) for n, v in med.items()},
        "speedup_packed": round(med["packed"] / med["unpacked"], 3),
        "step_loss_max_abs_diff": max(abs(a - b) for a, b in zip(losses["packed"], losses["unpacked"], strict=True)),
        "example_loss_max_abs_diff": gap,
        "first_last_loss": [round(losses["packed"][0], 4), round(losses["packed"][-1], 4)],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
