"""Sources: plug-ins that serve one engine step's batches, chosen per stage by `source: {name: ...}`.

The engine hands `next_batch` the live, unwrapped policy, so a rollout source can generate with it (see
`generating`); the record source ignores it. A source is stateful (its position) and moves past a
rolled-back window through `skip_past`, never by arithmetic the engine does on its cursor.

Record stream: sample i is record perm_e[i mod N] with e = i // N and perm_e a permutation seeded by
(seed, e), so the order is reproducible from the cursor alone and resume needs nothing else."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.batches import Batch, TokenBatch, TokenizedExample, collate, tokenize_record
from trainguard.data.config import DataSection
from trainguard.data.records import RecordSet
from trainguard.engine.state import Knobs
from trainguard.errors import DataError
from trainguard.registry import Registry
from trainguard.section import Section


class SourceConfig(Section):
    """Base of each source's config; `name` picks the source from the registry."""

    name: str
    data: DataSection | None = Field(
        None, description="This stage's own records (same keys as the run's `data`); default: the run's."
    )


@dataclass
class SourceContext:
    """What a source may build from: the stage's records, the tokenizer and the stage's batch shape."""

    records: RecordSet
    tokenizer: Any
    max_length: int
    batch_size: int
    seed: int
    companions: dict[str, Any] = field(default_factory=dict)
    knobs: Knobs = field(default_factory=Knobs)  # multipliers the guard's actions turn (a sampling temperature)


@contextmanager
def generating(policy: nn.Module) -> Iterator[nn.Module]:
    """The policy in eval mode under no_grad (no dropout, no graph), handed back in train mode."""
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad():
            yield policy
    finally:
        policy.train(was_training)


class Source(ABC):
    Config: ClassVar[type[SourceConfig]]

    @classmethod
    @abstractmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "Source": ...

    @abstractmethod
    def next_batch(self, policy: nn.Module | None = None) -> Batch:
        """One micro-batch; `policy` is the live, unwrapped model being trained."""

    def eval_data(self) -> list[Batch]:
        """Held-out batches the objective's `evaluate` reads."""
        return []

    @property
    def epoch(self) -> float:
        return 0.0

    @abstractmethod
    def skip_past(self, position: dict[str, Any]) -> int:
        """After a rollback restored an earlier position: move on to `position` (the state at the alert),
        so the window that led to the fault is never trained on; returns the samples skipped."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def notes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(severity, message, data) about the data, recorded as events when the stage starts."""
        return []


SOURCES: Registry[type[Source]] = Registry("source")


def tokenize_all(records: list[dict[str, Any]], tokenizer: Any, max_length: int) -> tuple[list[TokenizedExample], int]:
    """Tokenised examples and how many were truncated to `max_length`."""
    examples, truncated = [], 0
    for r in records:
        ex, cut = tokenize_record(tokenizer, r, max_length)
        examples.append(ex)
        truncated += cut
    return examples, truncated


class RecordSourceConfig(SourceConfig):
    name: Literal["records"] = "records"


@SOURCES.register("records")
class RecordSource(Source):
    """{prompt, completion} records as right-padded token batches, reshuffled at each epoch boundary."""

    Config = RecordSourceConfig

    def __init__(
        self,
        examples: list[TokenizedExample],
        batch_size: int,
        seed: int,
        pad_id: int,
        eval_examples: list[TokenizedExample] | None = None,
    ) -> None:
        if not examples:
            raise DataError("no training records left after the train/eval split")
        self.examples, self.eval_examples = examples, eval_examples or []
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.cursor = 0  # samples served so far
        self.truncated = 0
        self._perm_epoch = -1
        self._perm: list[int] = []

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "RecordSource":
        train, cut = tokenize_all(ctx.records.train, ctx.tokenizer, ctx.max_length)
        held, cut_eval = tokenize_all(ctx.records.eval, ctx.tokenizer, ctx.max_length)
        source = cls(train, ctx.batch_size, ctx.seed, ctx.tokenizer.pad_token_id, held)
        source.truncated = cut + cut_eval
        return source

    def notes(self) -> list[tuple[str, str, dict[str, Any]]]:
        if not self.truncated:
            return []
        message = f"{self.truncated} records truncated to tokenizer.max_length"
        return [("warning", message, {"truncated": self.truncated})]

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.examples), generator=gen).tolist(), epoch
        return self._perm

    def sample_index(self, i: int) -> int:
        n = len(self.examples)
        return self._permutation(i // n)[i % n]

    def next_batch(self, policy: nn.Module | None = None) -> TokenBatch:
        picked = [self.examples[self.sample_index(i)] for i in range(self.cursor, self.cursor + self.batch_size)]
        self.cursor += self.batch_size
        return collate(picked, self.pad_id)

    def eval_data(self) -> list[TokenBatch]:
        ex, size = self.eval_examples, self.batch_size
        return [collate(ex[i : i + size], self.pad_id) for i in range(0, len(ex), size)]

    @property
    def epoch(self) -> float:
        return self.cursor / len(self.examples)

    def skip_past(self, position: dict[str, Any]) -> int:
        skipped = int(position["cursor"]) - self.cursor
        self.cursor = int(position["cursor"])
        return skipped

    def state_dict(self) -> dict[str, int]:
        return {"cursor": self.cursor, "n_examples": len(self.examples)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["n_examples"] != len(self.examples):
            raise DataError(
                f"the data changed since the checkpoint ({state['n_examples']} training records then, "
                f"{len(self.examples)} now); resume needs the same data"
            )
        self.cursor = int(state["cursor"])
