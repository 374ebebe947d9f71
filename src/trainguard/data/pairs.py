"""Preference pairs as batches: both sides of each pair right-padded, the prompt cut from the left to fit.

Rows come from the run's (or the stage's) `data` like SFT records, `{prompt, response_chosen,
response_rejected}`; the order, the resumable cursor and the skipping of a rolled-back window are the record
source's."""

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from trainguard.data.batches import special_prefix
from trainguard.data.records import pair_problem
from trainguard.data.sources import SOURCES, RecordSource, SourceConfig, SourceContext
from trainguard.errors import DataError
from trainguard.reward.data import encode_text, pad_id


@dataclass
class PairExample:
    chosen: list[int]
    rejected: list[int]
    principles: dict[str, int]  # principle -> +1 (it prefers chosen) or -1 (it prefers rejected)
    signs: tuple[int, int] = (0, 0)  # per side: +1 unsafe, -1 safe, 0 unlabelled (safe-rlhf's cost sign)


@dataclass
class PairBatch:
    """Chosen rows then rejected rows, in one (2B, T) right-padded tensor: one forward scores both sides."""

    input_ids: torch.Tensor  # (2B, T)
    attention_mask: torch.Tensor  # (2B, T)
    principles: dict[str, torch.Tensor]  # name -> (B,) of +1, -1 or 0 (no label)
    signs: torch.Tensor | None = None  # (2B,) +1 unsafe, -1 safe, 0 unlabelled: chosen rows, then rejected

    @property
    def n_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    @property
    def n_tokens(self) -> int:
        return int(self.attention_mask.sum())

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(-1)

    def to(self, device: torch.device) -> "PairBatch":
        principles = {k: v.to(device) for k, v in self.principles.items()}
        signs = self.signs.to(device) if self.signs is not None else None
        return PairBatch(self.input_ids.to(device), self.attention_mask.to(device), principles, signs)


def collate_pairs(examples: list[PairExample], pad: int, principles: list[str]) -> PairBatch:
    rows = [e.chosen for e in examples] + [e.rejected for e in examples]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[i, : len(ids)] = 1
    labels = {p: torch.tensor([e.principles.get(p, 0) for e in examples], dtype=torch.float32) for p in principles}
    signs = torch.tensor([e.signs[0] for e in examples] + [e.signs[1] for e in examples], dtype=torch.float32)
    return PairBatch(input_ids, mask, labels, signs)


def safety_signs(row: dict[str, Any]) -> tuple[int, int]:
    """`chosen_safe` / `rejected_safe` of a row as cost signs: +1 unsafe, -1 safe, 0 when absent."""

    def sign(value: Any) -> int:
        return 0 if not isinstance(value, bool) else (-1 if value else 1)

    return sign(row.get("chosen_safe")), sign(row.get("rejected_safe"))


def principle_labels(row: dict[str, Any]) -> dict[str, int]:
    """`principles: {name: chosen|rejected}` of a row, as +1/-1 per principle."""
    found = row.get("principles") or {}
    return {k: 1 if v == "chosen" else -1 for k, v in found.items() if v in ("chosen", "rejected")}


class PairSourceConfig(SourceConfig):
    name: Literal["pairs"] = "pairs"


@SOURCES.register("pairs")
class PairSource(RecordSource):
    """Preference rows as `PairBatch`es, reshuffled each epoch like the record source."""

    Config = PairSourceConfig

    def __init__(self, examples: list, batch_size: int, seed: int, pad_id: int, eval_examples: list | None = None):
        super().__init__(examples, batch_size, seed, pad_id, eval_examples)
        self.principles = sorted({p for e in examples for p in e.principles})
        self.skipped: dict[str, int] = {}

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "PairSource":
        skipped: dict[str, int] = {}
        truncated = 0
        tok, prefix = ctx.tokenizer, special_prefix(ctx.tokenizer)
        sep = getattr(ctx.objective, "separator", " ")  # the reward objective's

        def encode(rows: list[dict[str, Any]]) -> list[PairExample]:
            nonlocal truncated
            out = []
            for row in rows:
                problem = pair_problem(row) if "response_chosen" in row else "an SFT record, not a preference pair"
                if problem:
                    skipped[problem] = skipped.get(problem, 0) + 1
                    continue
                chosen, cut_c = encode_text(tok, row["prompt"], row["response_chosen"], ctx.max_length, prefix, sep)
                rejected, cut_r = encode_text(tok, row["prompt"], row["response_rejected"], ctx.max_length, prefix, sep)
                truncated += cut_c + cut_r
                out.append(PairExample(chosen, rejected, principle_labels(row), safety_signs(row)))
            return out

        train, held = encode(ctx.records.train), encode(ctx.records.eval)
        if not train:
            why = ", ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no rows"
            raise DataError(f"no usable preference pairs for the reward stage ({why})")
        source = cls(train, ctx.batch_size, ctx.seed, pad_id(ctx.tokenizer), held)
        source.skipped, source.truncated, source.max_length = skipped, truncated, ctx.max_length
        return source

    def notes(self) -> list[tuple[str, str, dict[str, Any]]]:
        notes = []
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.items())
            notes.append(("warning", f"preference rows skipped (bad rows): {reasons}", dict(self.skipped)))
        if self.truncated:
            message = (
                f"{self.truncated} texts cut from the left of the prompt to fit tokenizer.max_length={self.max_length}"
            )
            notes.append(("warning", message, {"truncated": self.truncated}))
        return notes

    def next_batch(self, policy: nn.Module | None = None) -> PairBatch:
        return collate_pairs(self.take(), self.pad_id, self.principles)

    def eval_data(self) -> list[PairBatch]:
        ex, size = self.eval_examples, self.batch_size
        return [collate_pairs(ex[i : i + size], self.pad_id, self.principles) for i in range(0, len(ex), size)]
