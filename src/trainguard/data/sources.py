"""Sources: plug-ins that serve one engine step's batches, chosen per stage by `source: {name: ...}`.

The engine hands `next_batch` the live, unwrapped policy, so a rollout source can generate with it (see
`generating`); the record source ignores it. A source is stateful (its position) and moves past a
rolled-back window through `skip_past`, never by arithmetic the engine does on its cursor.

Record stream: sample i is record perm_e[i mod N] with e = i // N and perm_e a permutation seeded by
(seed, e), so the order is reproducible from the cursor alone and resume needs nothing else.

Many processes: `batch_size` is the global micro-batch. Every rank keeps the same cursor and takes its own
equal slice of each micro-batch (`rows`), so the ranks' shards are disjoint, their union is what one
process would train on, and a checkpoint's cursor serves every rank."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.batches import (
    Batch,
    TokenBatch,
    TokenizedExample,
    collate,
    special_prefix,
    tokenize_chat,
    tokenize_record,
)
from trainguard.data.config import DataSection
from trainguard.data.packing import pack
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
    objective: Any = None  # the stage's objective config, for sources that encode as it says (reward: separator)


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
    shardable: ClassVar[bool] = False  # takes its share of each micro-batch on many processes (`rows`)
    rank, world = 0, 1

    def shard(self, rank: int, world: int) -> None:
        """This process's place among `world` (set once, before the first batch)."""
        self.rank, self.world = rank, world

    def rows(self, n: int) -> range:
        """This rank's rows of an n-row micro-batch: its equal, contiguous share."""
        return range(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def split(self) -> tuple[str, int]:
        """(field, value) of what a shardable source's step splits over the ranks, which must divide evenly."""
        raise NotImplementedError(f"{type(self).__name__} does not shard over processes")

    @classmethod
    @abstractmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "Source": ...

    @abstractmethod
    def next_batch(self, policy: nn.Module | None = None) -> Batch:
        """One micro-batch; `policy` is the live, unwrapped model being trained."""

    def eval_data(self) -> list[Batch]:
        """Held-out batches the objective's `evaluate` reads."""
        return []

    def observe(self, batch: Batch, out: Any) -> None:
        """What the objective made of a batch this source served (its LossOutput, before backward): a source
        that samples hard examples more often learns their losses here. Must not sync with the device."""
        return None

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


@dataclass
class Tokenized:
    examples: list[TokenizedExample]
    truncated: int = 0  # prompts cut from the left to fit
    dropped: int = 0  # completions that do not fit at all (bad rows)
    unrenderable: int = 0  # conversations the chat template does not render turn by turn (bad rows)


def tokenize_all(records: list[dict[str, Any]], tokenizer: Any, max_length: int) -> Tokenized:
    """Tokenised examples, counting prompts cut to fit `max_length` and rows whose completion cannot fit."""
    out, prefix = Tokenized([]), special_prefix(tokenizer)
    if any("messages" in r for r in records) and not getattr(tokenizer, "chat_template", None):
        raise DataError("data.chat needs a chat template: this tokenizer has none; set tokenizer.chat_template")
    for r in records:
        if "completion" not in r and "messages" not in r:
            raise DataError(
                "these rows are preference pairs ({prompt, response_chosen, response_rejected}): train "
                "them with objective: reward"
            )
        if "messages" in r:
            ex, cut = tokenize_chat(tokenizer, r["messages"], max_length)
        else:
            ex, cut = tokenize_record(tokenizer, r, max_length, prefix)
        if ex is None and not cut:
            out.unrenderable += 1
        elif ex is None:
            out.dropped += 1
        else:
            out.examples.append(ex)
            out.truncated += cut
    return out


class RecordSourceConfig(SourceConfig):
    name: Literal["records"] = "records"
    packing: bool = Field(
        False,
        description="Pack each micro-batch's examples end to end into rows of up to tokenizer.max_length tokens, "
        "positions restarting per example and attention kept within it: less padding, the same examples per step "
        "and the same loss per example. Held-out batches are not packed.",
    )


@SOURCES.register("records")
class RecordSource(Source):
    """{prompt, completion} records as right-padded token batches, reshuffled at each epoch boundary; with
    `pack_to`, each batch's examples packed into rows of up to that many tokens (data/packing.py)."""

    Config = RecordSourceConfig
    shardable = True

    def __init__(
        self,
        examples: list[TokenizedExample],
        batch_size: int,
        seed: int,
        pad_id: int,
        eval_examples: list[TokenizedExample] | None = None,
        pack_to: int | None = None,
    ) -> None:
        if not examples:
            raise DataError("no training records left after the train/eval split")
        self.examples, self.eval_examples = examples, eval_examples or []
        self.batch_size, self.seed, self.pad_id = batch_size, seed, pad_id
        self.pack_to = pack_to  # row length when packing; None: one example per row
        self.cursor = 0  # samples served so far
        self.truncated = self.dropped = self.unrenderable = self.max_length = 0
        self._perm_epoch = -1
        self._perm: list[int] = []

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "RecordSource":
        train = tokenize_all(ctx.records.train, ctx.tokenizer, ctx.max_length)
        held = tokenize_all(ctx.records.eval, ctx.tokenizer, ctx.max_length)
        if not train.examples and train.unrenderable:
            raise DataError(
                f"the chat template does not render conversations turn by turn ({train.unrenderable} rows): each "
                "turn's rendering must start with the previous turns' (set tokenizer.chat_template)"
            )
        if not train.examples and train.dropped:
            raise DataError(
                f"every training record's completion is longer than tokenizer.max_length={ctx.max_length} "
                f"allows ({train.dropped} rows); raise tokenizer.max_length"
            )
        pack_to = ctx.max_length if isinstance(config, RecordSourceConfig) and config.packing else None
        source = cls(train.examples, ctx.batch_size, ctx.seed, ctx.tokenizer.pad_token_id, held.examples, pack_to)
        source.truncated, source.dropped = train.truncated + held.truncated, train.dropped + held.dropped
        source.unrenderable = train.unrenderable + held.unrenderable
        source.max_length = ctx.max_length
        return source

    def notes(self) -> list[tuple[str, str, dict[str, Any]]]:
        notes = []
        if self.truncated:
            message = f"{self.truncated} prompts cut from the left to fit tokenizer.max_length={self.max_length}"
            notes.append(("warning", message, {"truncated": self.truncated}))
        if self.dropped:
            message = (
                f"{self.dropped} records skipped (bad rows): the completion does not fit "
                f"tokenizer.max_length={self.max_length}"
            )
            notes.append(("warning", message, {"dropped": self.dropped}))
        if self.unrenderable:
            message = (
                f"{self.unrenderable} conversations skipped (bad rows): the chat template does not render them "
                "turn by turn"
            )
            notes.append(("warning", message, {"unrenderable": self.unrenderable}))
        return notes

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._perm_epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._perm_epoch = torch.randperm(len(self.examples), generator=gen).tolist(), epoch
        return self._perm

    def sample_index(self, i: int) -> int:
        n = len(self.examples)
        return self._permutation(i // n)[i % n]

    def split(self) -> tuple[str, int]:
        return "batch_size", self.batch_size

    def take(self) -> list[Any]:
        """This rank's examples of the next micro-batch; the cursor moves past the whole micro-batch."""
        picked = [self.examples[self.sample_index(self.cursor + i)] for i in self.rows(self.batch_size)]
        self.cursor += self.batch_size
        return picked

    def next_batch(self, policy: nn.Module | None = None) -> TokenBatch:
        picked = self.take()
        return collate(picked, self.pad_id) if self.pack_to is None else pack(picked, self.pad_id, self.pack_to)

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
