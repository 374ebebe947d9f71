"""The `mix` source: a stage's batches drawn from task groups by weight (a curriculum is stages with different
mixes), optionally oversampling the examples with the highest loss seen so far.

Sample i's group is drawn by the weights from a uniform that depends on (seed, i) alone; the record within the
group is the next of that group's epoch permutations (each group is a RecordSource, so tokenisation, notes and
permutations are RecordSource's), at a per-group counter kept in the state. With `hard`, an evenly spaced
`fraction` of the samples instead come from the group's pool of highest-loss examples, with probability
proportional to exp(loss / temperature); the pool is filled from the losses the objective reports per row."""

import bisect
import itertools
import math
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard import ranks
from trainguard.data.batches import Batch, TokenBatch, collate
from trainguard.data.records import RecordSet
from trainguard.data.sources import SOURCES, RecordSource, RecordSourceConfig, Source, SourceConfig, SourceContext
from trainguard.errors import ConfigError, DataError
from trainguard.section import Section

UNGROUPED = "records"  # the group of a record with no `task` whose file is unknown
_MASK = (1 << 64) - 1


class HardSection(Section):
    fraction: float = Field(
        0.25,
        gt=0,
        lt=1,
        description="Share of samples drawn from the hard-example pool of their group instead of the group's next "
        "record; evenly spaced (among any n consecutive samples, n x fraction rounded down or up). The draws that "
        "remain keep every group's epoch order. Default 0.25, the curricula issue's example.",
    )
    temperature: float = Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="A pooled example is drawn with probability proportional to exp(loss / temperature), loss being "
        "its mean token cross-entropy when last trained on: lower concentrates on the hardest, higher is uniform.",
    )
    pool: int = Field(
        256,
        gt=0,
        description="Per group, how many of the highest-loss examples seen are kept as candidates (per group, so "
        "the weights still set each group's share of samples).",
    )


Weight = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class MixSourceConfig(SourceConfig):
    name: Literal["mix"] = "mix"
    weights: dict[str, Weight] = Field(
        min_length=1,
        description="Share of samples per group, normalised to sum 1, e.g. {reverse: 0.7, sort: 0.3}. A group is a "
        "record's `task` (task-generated records, file rows that have one), else its file's name without the "
        "extension (`cot.jsonl` -> cot); groups left out are not trained on. Each stage declares its own mix.",
    )
    hard: HardSection | None = Field(
        None,
        description="Oversample hard (high-loss) examples, e.g. {fraction: 0.25, temperature: 1.0}; needs an "
        "objective that reports per-row losses (sft). Default: off.",
    )

    def check(self, records: RecordSet) -> None:
        """Refuse weights on groups that the stage's records lack, naming the ones they have."""
        present = sorted({group for group, _ in grouped(records.train + records.eval, records)})
        unknown = [name for name in self.weights if name not in present]
        if unknown:
            raise ConfigError(
                f"source.weights: no record of this stage is in group {unknown[0]!r}; allowed (the groups of its "
                f"records): {', '.join(present)}"
            )


def grouped(rows: list[dict[str, Any]], records: RecordSet) -> list[tuple[str, dict[str, Any]]]:
    """Each row with its group: its `task`, else the stem of the file it was read from, else `records`."""
    files = {id(r): Path(source).stem for source, rs in records.by_source for r in rs}
    return [(r.get("task") or files.get(id(r), UNGROUPED), r) for r in rows]


def uniform(seed: int, stream: int, i: int) -> float:
    """A uniform in [0, 1) that depends on (seed, stream, i) alone (SplitMix64 finaliser), so any sample's draws
    are recomputed from its index: no generator state to save or replay."""

    def mix(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & _MASK
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
        return x ^ (x >> 31)

    return (mix(mix(mix(seed & _MASK) ^ stream) ^ i) >> 11) / 2**53


def is_hard_slot(i: int, fraction: float) -> bool:
    """Whether sample i is a hard draw: evenly spaced, floor(n x fraction) of the first n samples."""
    return math.floor((i + 1) * fraction) > math.floor(i * fraction)


def boltzmann_pick(losses: list[float], temperature: float, u: float) -> int:
    """Index k drawn with probability exp(losses[k] / temperature) / sum, by the uniform `u` (max-shifted)."""
    top = max(losses)
    cumulative: list[float] = []
    total = 0.0
    for loss in losses:
        total += math.exp((loss - top) / temperature)
        cumulative.append(total)
    return min(bisect.bisect_right(cumulative, u * total), len(losses) - 1)


@SOURCES.register("mix")
class MixSource(Source):
    """Batches whose rows come from task groups by weight; each row is labelled with its group (`tasks`) and its
    index in that group (`example_ids`), so the objective reports per-group losses and the hard pool learns."""

    Config = MixSourceConfig
    shardable = True

    def split(self) -> tuple[str, int]:
        return "batch_size", self.batch_size

    def __init__(
        self,
        groups: dict[str, RecordSource],
        weights: dict[str, float],
        batch_size: int,
        seed: int,
        pad_id: int,
        hard: HardSection | None = None,
    ) -> None:
        self.groups, self.names = groups, list(weights)
        total = sum(weights.values())
        self.cdf = [c / total for c in itertools.accumulate(weights.values())]  # group k: u < cdf[k]
        self.batch_size, self.seed, self.pad_id, self.hard = batch_size, seed, pad_id, hard
        self.cursor = 0  # samples served
        self.counts = dict.fromkeys(self.names, 0)  # fresh (non-hard) samples served per group
        self.pool: dict[str, dict[int, float]] = {name: {} for name in self.names}  # example index -> last loss
        self._pending: list[tuple[tuple[str, ...], tuple[int, ...], torch.Tensor]] = []  # observed, not yet read
        self._notes: list[tuple[str, str, dict[str, Any]]] = []

    @classmethod
    def build(cls, config: SourceConfig, ctx: SourceContext) -> "MixSource":
        assert isinstance(config, MixSourceConfig)
        config.check(ctx.records)
        train, held = grouped(ctx.records.train, ctx.records), grouped(ctx.records.eval, ctx.records)
        groups: dict[str, RecordSource] = {}
        for name in config.weights:
            rows = [r for g, r in train if g == name]
            if not rows:
                raise DataError(
                    f"source.weights gives group {name!r} a weight but none of its records is left for training "
                    "after the held-out split; add records or lower data.eval_fraction"
                )
            records = RecordSet(rows, [r for g, r in held if g == name])
            seed = ctx.seed * 1_000_033 + zlib.crc32(name.encode())  # each group its own permutations
            groups[name] = RecordSource.build(RecordSourceConfig(), replace(ctx, records=records, seed=seed))
        source = cls(groups, dict(config.weights), ctx.batch_size, ctx.seed, ctx.tokenizer.pad_token_id, config.hard)
        total = sum(config.weights.values())
        mix = ", ".join(f"{name} {w / total:.2f}" for name, w in config.weights.items())
        hard = config.hard
        extra = f"; hard examples: {hard.fraction:.0%} of samples, temperature {hard.temperature}" if hard else ""
        shares = {name: w / total for name, w in config.weights.items()}
        source._notes.append(("info", f"mix: {mix}{extra}", {"weights": shares}))
        left_out = sorted({g for g, _ in train} - set(config.weights))
        if left_out:
            message = f"records of {', '.join(left_out)} are not in source.weights: this stage does not train on them"
            source._notes.append(("warning", message, {"left_out": left_out}))
        return source

    def notes(self) -> list[tuple[str, str, dict[str, Any]]]:
        per_group = [
            (severity, f"{name}: {message}", data | {"group": name})
            for name, group in self.groups.items()
            for severity, message, data in group.notes()
        ]
        return self._notes + per_group

    # -- the stream ----------------------------------------------------------------------------------------
    def draw(self, i: int) -> tuple[str, int]:
        """Sample i: (group, example index). Advances the group's counter unless the draw is a hard one."""
        name = self.names[min(bisect.bisect_right(self.cdf, uniform(self.seed, 0, i)), len(self.names) - 1)]
        pool = self.pool[name]
        if self.hard is not None and pool and is_hard_slot(i, self.hard.fraction):
            indices = sorted(pool)
            k = boltzmann_pick([pool[j] for j in indices], self.hard.temperature, uniform(self.seed, 1, i))
            return name, indices[k]
        j = self.counts[name]
        self.counts[name] += 1
        return name, self.groups[name].sample_index(j)

    def next_batch(self, policy: nn.Module | None = None) -> TokenBatch:
        self.absorb()
        drawn = [self.draw(i) for i in range(self.cursor, self.cursor + self.batch_size)]  # every rank draws all
        picked = [drawn[i] for i in self.rows(self.batch_size)]
        self.cursor += self.batch_size
        batch = collate([self.groups[name].examples[j] for name, j in picked], self.pad_id)
        return replace(batch, tasks=tuple(n for n, _ in picked), example_ids=tuple(j for _, j in picked))

    def eval_data(self) -> list[TokenBatch]:
        """Each weighted group's held-out records, in batches of one group, labelled with it."""
        out = []
        for name, group in self.groups.items():
            out += [replace(b, tasks=(name,) * b.input_ids.shape[0]) for b in group.eval_data()]
        return out

    # -- hard examples -------------------------------------------------------------------------------------
    def observe(self, batch: Batch, out: Any) -> None:
        """Keep the rows' losses as device tensors; `absorb` reads them at the next batch (no sync here)."""
        tasks, ids = getattr(batch, "tasks", None), getattr(batch, "example_ids", None)
        row_loss = out.extras.get("row_loss")
        if self.hard is None or tasks is None or ids is None or row_loss is None:
            return
        self._pending.append((tasks, ids, row_loss.detach()))

    def absorb(self) -> None:
        """Fold the observed losses into the pools: one host sync (a .tolist()) per engine step, and only when
        hard examples are on. Non-finite losses are dropped (the guard handles those steps). With many processes
        every rank folds in every rank's rows, micro-batch by micro-batch in the one-process order, so the pools
        (and the hard draws every rank makes from them) stay the same everywhere."""
        if self.hard is None or not (self._pending or ranks.active()):
            return  # with many processes every rank gathers, even one whose batch carried no rows (a fault's)
        pending, self._pending = self._pending, []
        flat = torch.cat([loss.float().reshape(-1) for _, _, loss in pending]).tolist() if pending else []
        ends = list(itertools.accumulate(len(ids) for _, ids, _ in pending))
        mine = [
            (list(t), list(ids), flat[end - len(ids) : end]) for (t, ids, _), end in zip(pending, ends, strict=True)
        ]
        everyone = ranks.gather(mine)
        most = max(map(len, everyone))
        seen = [
            row for k in range(most) for theirs in everyone if k < len(theirs) for row in zip(*theirs[k], strict=True)
        ]
        for name, j, loss in seen:
            if name in self.pool and math.isfinite(loss):
                self.pool[name][j] = loss
        for name, pool in self.pool.items():
            if len(pool) > self.hard.pool:  # keep the highest losses (ties: the lower index)
                kept = sorted(pool.items(), key=lambda item: (-item[1], item[0]))[: self.hard.pool]
                self.pool[name] = dict(kept)

    # -- position ------------------------------------------------------------------------------------------
    @property
    def epoch(self) -> float:
        return sum(self.counts.values()) / sum(len(g.examples) for g in self.groups.values())

    def skip_past(self, position: dict[str, Any]) -> int:
        """Move the stream to `position`; the hard pools stay as the rollback restored them (the skipped
        window's losses came from the model that faulted)."""
        skipped = int(position["cursor"]) - self.cursor
        self.cursor, self.counts = int(position["cursor"]), dict(position["counts"])
        return skipped

    def state_dict(self) -> dict[str, Any]:
        self.absorb()  # the last step's losses belong to the state (resume draws as an uninterrupted run)
        return {
            "cursor": self.cursor,
            "counts": dict(self.counts),
            "n_examples": {name: len(g.examples) for name, g in self.groups.items()},
            "pool": {name: [[j, loss] for j, loss in sorted(pool.items())] for name, pool in self.pool.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        now = {name: len(g.examples) for name, g in self.groups.items()}
        if state["n_examples"] != now:
            raise DataError(
                f"the data or the mix changed since the checkpoint (training records per group then "
                f"{state['n_examples']}, now {now}); resume needs the same data and source.weights"
            )
        self.cursor, self.counts = int(state["cursor"]), dict(state["counts"])
        self.pool = {name: {int(j): float(loss) for j, loss in state["pool"][name]} for name in self.names}
        self._pending = []
