"""Preference pairs: which rows are usable, and how a (prompt, response) pair becomes tokens.

A row is `{prompt, response_chosen, response_rejected, preference_score?}`; the text scored is
`prompt + separator + response` (the write-up's separator is a space; a model fine-tuned on `{prompt,
completion}` records saw none, so the `reward` stage lets a run choose). Rows missing a field, with an empty
response or with chosen == rejected are counted and skipped. A text ends with the tokenizer's EOS, where the
reward is read; one longer than `max_length` loses the start of its prompt, never its response's end.
"""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset

from trainguard.data.batches import special_prefix
from trainguard.data.records import pair_problem


@dataclass
class PairReport:
    """What became of the rows handed in: usable ones, skipped ones by reason, texts cut to fit."""

    rows: int = 0
    usable: int = 0
    skipped: Counter = field(default_factory=Counter)
    truncated: int = 0

    def summary(self) -> str:
        parts = [f"{self.usable} of {self.rows} preference rows usable"]
        if self.skipped:
            parts.append("skipped " + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common()))
        if self.truncated:
            parts.append(f"{self.truncated} texts cut from the left of the prompt to fit")
        return "; ".join(parts)


def usable_pairs(data: list[Any], report: PairReport | None = None) -> list[dict[str, Any]]:
    """The usable rows of `data` (bad ones counted in `report`); ValueError when none is left."""
    report = report if report is not None else PairReport()
    kept = []
    for row in data:
        report.rows += 1
        problem = pair_problem(row)
        if problem:
            report.skipped[problem] += 1
        else:
            kept.append(row)
    report.usable = len(kept)
    if not kept:
        raise ValueError(f"no usable preference pairs: {report.summary()}" if data else "training data is empty")
    return kept


def encode_text(
    tokenizer: Any, prompt: str, response: str, max_length: int, prefix: list[int], separator: str = " "
) -> tuple[list[int], bool]:
    """Token ids of `prompt + separator + response` between the tokenizer's own prefix and its EOS (as a
    fine-tuned model saw its records end), cut from the left to fit. The reward is read at that EOS: every
    token of the response, the last one too, is then seen before the model scores it."""
    ids = tokenizer(prompt + separator + response, add_special_tokens=False)["input_ids"]
    suffix = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    room = max_length - len(prefix) - len(suffix)
    return prefix + ids[-room:] + suffix if len(ids) > room else prefix + ids + suffix, len(ids) > room


def pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)


def encode_pair_texts(
    tokenizer: Any,
    prompts: list[str],
    responses: list[str],
    max_length: int,
    width: int | None = None,
    separator: str = " ",
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Right-padded (B, width or longest) input ids and attention mask, and how many texts were cut."""
    prefix = special_prefix(tokenizer)
    pairs = zip(prompts, responses, strict=True)
    encoded = [encode_text(tokenizer, p, r, max_length, prefix, separator) for p, r in pairs]
    width = width or max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id(tokenizer), dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, _) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids, mask, sum(cut for _, cut in encoded)


class PreferenceDataset(Dataset):
    """Tokenised pairs padded to `max_length`, so that torch's default collate stacks them into
    `chosen_input_ids`, `chosen_attention_mask`, `rejected_input_ids`, `rejected_attention_mask`
    (and `preference_score` when the rows have one). `report` says what was skipped or cut."""

    def __init__(self, data: list[Any], tokenizer: Any, max_length: int = 512, separator: str = " ") -> None:
        self.report = PairReport()
        self.rows = usable_pairs(list(data), self.report)
        self.tokenizer, self.max_length = tokenizer, max_length
        prompts = [r["prompt"] for r in self.rows]
        chosen, rejected = [r["response_chosen"] for r in self.rows], [r["response_rejected"] for r in self.rows]
        self.chosen = encode_pair_texts(tokenizer, prompts, chosen, max_length, max_length, separator)
        self.rejected = encode_pair_texts(tokenizer, prompts, rejected, max_length, max_length, separator)
        self.report.truncated = self.chosen[2] + self.rejected[2]
        self.scored = all("preference_score" in r for r in self.rows)  # a key in every item, or in none

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {
            "chosen_input_ids": self.chosen[0][i],
            "chosen_attention_mask": self.chosen[1][i],
            "rejected_input_ids": self.rejected[0][i],
            "rejected_attention_mask": self.rejected[1][i],
        }
        if self.scored:
            item["preference_score"] = torch.tensor(float(self.rows[i]["preference_score"]))
        return item


def trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the right-padding columns no row of a side uses: same rewards, far less compute than max_length."""
    out = dict(batch)
    for side in ("chosen", "rejected"):
        width = int(batch[f"{side}_attention_mask"].sum(-1).max())
        out[f"{side}_input_ids"] = batch[f"{side}_input_ids"][:, :width]
        out[f"{side}_attention_mask"] = batch[f"{side}_attention_mask"][:, :width]
    return out
