"""Record sets and the SFT batch source, whose whole position is one integer cursor (samples served).

Sample i of the stream is record perm_e[i mod N] with e = i // N and perm_e a permutation seeded by
(seed, e): the order is reproducible from the cursor alone, so resume and rollback need nothing else.
"""

from dataclasses import dataclass, field
from typing import Any

import torch

from trainguard.config import DataSection, FileSource, TaskSource
from trainguard.data.batches import TokenBatch, TokenizedExample, collate, tokenize_record
from trainguard.data.records import ReadReport, read_jsonl
from trainguard.errors import DataError
from trainguard.tasks import build_task


@dataclass
class RecordSet:
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    reports: list[ReadReport] = field(default_factory=list)
    by_source: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)  # before the split


def load_records(cfg: DataSection, seed: int) -> RecordSet:
    """All sources concatenated, then a seeded split into train and held-out eval records."""
    records: list[dict[str, Any]] = []
    reports: list[ReadReport] = []
    by_source: list[tuple[str, list[dict[str, Any]]]] = []
    for src in cfg.sources:
        if isinstance(src, FileSource):
            rows, report = read_jsonl(src.path)
        else:
            assert isinstance(src, TaskSource)
            task = build_task(src.task, src.params)
            rows = [task.record(i) for i in range(src.start, src.start + src.n)]
            report = ReadReport(f"task {src.task}", rows=len(rows), usable=len(rows))
        records.extend(rows)
        reports.append(report)
        by_source.append((report.source, rows))
    order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
    n_eval = round(len(records) * cfg.eval_fraction)
    if cfg.eval_fraction > 0 and len(records) > 1:
        n_eval = min(max(n_eval, 1), len(records) - 1)
    eval_set = [records[i] for i in order[:n_eval]]
    train = [records[i] for i in order[n_eval:]]
    return RecordSet(train, eval_set, reports, by_source)


def tokenize_all(records: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[TokenizedExample], int]:
    """Tokenised examples and how many were truncated to `max_length`."""
    examples, truncated = [], 0
    for r in records:
        ex, cut = tokenize_record(tokenizer, r, max_length)
        examples.append(ex)
        truncated += cut
    return examples, truncated


class SFTSource:
    """Serves fixed-size batches forever, reshuffling at each epoch boundary."""

    def __init__(self, examples: list[TokenizedExample], batch_size: int, seed: int, pad_id: int) -> None:
        if not examples:
            raise DataError("no training records left after the train/eval split")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed
        self.pad_id = pad_id
        self.cursor = 0  # samples served so far
        self._perm_epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.examples), generator=gen).tolist(), epoch
        return self._perm

    def sample_index(self, i: int) -> int:
        n = len(self.examples)
        return self._permutation(i // n)[i % n]

    def next_batch(self) -> TokenBatch:
        picked = [self.examples[self.sample_index(i)] for i in range(self.cursor, self.cursor + self.batch_size)]
        self.cursor += self.batch_size
        return collate(picked, self.pad_id)

    @property
    def epoch(self) -> float:
        return self.cursor / len(self.examples)

    def skip(self, n_batches: int) -> None:
        """Move past data without training on it (rollback skips the window that led to a fault)."""
        self.cursor += n_batches * self.batch_size

    def state_dict(self) -> dict[str, int]:
        return {"cursor": self.cursor, "n_examples": len(self.examples)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n_examples"] != len(self.examples):
            raise DataError(
                f"the data changed since the checkpoint ({state['n_examples']} training records then, "
                f"{len(self.examples)} now); resume needs the same data"
            )
        self.cursor = int(state["cursor"])


def eval_batches(examples: list[TokenizedExample], batch_size: int, pad_id: int) -> list[TokenBatch]:
    return [collate(examples[i : i + batch_size], pad_id) for i in range(0, len(examples), batch_size)]
