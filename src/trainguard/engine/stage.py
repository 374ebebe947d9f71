"""Build one stage's pieces from the run config: where its model starts, its frozen companions, its
objective (with heads), optimizer, source and guard. Stages hand over by folder, never by live object."""

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from trainguard import ranks
from trainguard.atomic import atomic_write_text
from trainguard.config import RunConfig, StageSection
from trainguard.data.records import RecordSet
from trainguard.data.sources import SOURCES, Source, SourceContext
from trainguard.engine.companions import Companion, load_companion, reference_policy
from trainguard.engine.optim import build_optimizer
from trainguard.engine.pieces import StagePieces
from trainguard.engine.sharding import shard
from trainguard.engine.state import Knobs
from trainguard.engine.watch import StageWatch
from trainguard.errors import ConfigError
from trainguard.guard.guard import Guard
from trainguard.models.loading import DTYPES, build_model, is_lora, is_quantized
from trainguard.models.spiking import implied_plugins
from trainguard.objectives import OBJECTIVES, STEP_PLUGINS, ObjectiveContext
from trainguard.rundir import RunDir


def stage_steps(stage: StageSection, n_train: int) -> int:
    if stage.max_steps is not None:
        return stage.max_steps
    assert stage.epochs is not None
    return max(1, math.ceil(stage.epochs * n_train / (stage.batch_size * stage.grad_accum)))


@dataclass
class StageStart:
    path: Path | None  # the folder the model loads from; None: the run's preset, seeded
    label: str  # for the manifest and events


class StageBuilder:
    """Knows the run config, the run folder and each stage's records; builds a stage's pieces on demand."""

    def __init__(
        self, cfg: RunConfig, run: RunDir, tokenizer: Any, accelerator: Accelerator, records: list[RecordSet]
    ) -> None:
        self.cfg, self.run, self.tokenizer, self.accelerator, self.records = cfg, run, tokenizer, accelerator, records

    def folder_of(self, value: str, index: int) -> Path:
        """The export folder of a stage before `index`, or a model folder given by path."""
        earlier = [s.name for s in self.cfg.stages[:index]]
        return self.run.stage_export(value, last=False) if value in earlier else Path(value)

    def start(self, index: int) -> StageStart:
        init = self.cfg.stages[index].init
        if init == "previous" and index > 0:  # the previous stage's export, whatever that stage is called
            folder = self.run.stage_export(self.cfg.stages[index - 1].name, last=False)
            return StageStart(folder, str(folder))
        if init in ("previous", "base"):
            m = self.cfg.model
            path = Path(m.path) if m.path else None
            return StageStart(path, m.path or f"preset {m.preset} (seed {self.cfg.run.seed})")
        folder = self.folder_of(init, index)
        return StageStart(folder, str(folder))

    def model(self, index: int, start: StageStart) -> nn.Module:
        stage, cfg = self.cfg.stages[index], self.cfg
        path = str(start.path) if start.path is not None else None
        lora = cfg.stage_lora(index)
        model = build_model(cfg.model, self.tokenizer, cfg.tokenizer.max_length, cfg.run.seed, path=path, lora=lora)
        if stage.freeze_base and not is_lora(model):
            model.requires_grad_(False)  # with LoRA the base is frozen already
        return model

    def companions(self, index: int, model: nn.Module, start: StageStart) -> dict[str, Companion]:
        stage, device = self.cfg.stages[index], self.accelerator.device
        out: dict[str, Companion] = {}
        if stage.reference is not None:
            out["reference"] = reference_policy(stage.reference, model, start.label, device)
        for key in ("reward_model", "cost_model"):
            if (value := getattr(stage, key)) is not None:
                out[key] = load_companion(self.folder_of(value, index), device, DTYPES[self.cfg.model.dtype])
        return out

    def source(self, index: int, companions: dict[str, Companion], knobs: Knobs) -> Source:
        stage = self.cfg.stages[index]
        ctx = SourceContext(
            records=self.records[index],
            tokenizer=self.tokenizer,
            max_length=self.cfg.tokenizer.max_length,
            batch_size=stage.batch_size,
            seed=self.cfg.run.seed + index,
            companions=companions,
            knobs=knobs,
            objective=stage.objective,
        )
        source = SOURCES.get(stage.source.name).build(stage.source, ctx)
        world = ranks.world_size()
        if world > 1:
            check_split(f"stages.{index}", stage.source.name, source, world)
        source.shard(ranks.rank(), world)
        return source

    def guard(self, index: int, objective: Any, plugins: list[Any]) -> Guard | None:
        """The stage's guard. Its loss detectors watch `loss/task` when plug-ins add terms (a Lagrangian grows
        with λ by design) and sit out when the objective's loss is no measure of progress (policy gradients)."""
        cfg = self.cfg.stage_guard(index)
        if not cfg.enabled:
            return None
        return Guard(cfg, watch_loss=objective.loss_tracks_progress, loss_key="loss/task" if plugins else "loss/train")

    def trained_tasks(self, index: int) -> set[str]:
        """The tasks stage `index` trains on: a mix's weighted tasks, else its records' `task` keys; and an RL
        source's task."""
        source = self.cfg.stages[index].source
        weights = getattr(source, "weights", None)
        tasks = set(weights) if weights else {str(r["task"]) for r in self.records[index].train if "task" in r}
        source_task = getattr(source, "task", None)
        return tasks | ({source_task} if source_task else set())

    def watch(self, index: int) -> StageWatch | None:
        """The stage's promotion gate and probes; their example rows go to the run folder's alignment/."""
        stage = self.cfg.stages[index]
        if stage.gate is None and not stage.probes:
            return None
        folder = self.run.path / "alignment"

        def write(name: str, rows: list[dict[str, Any]]) -> None:
            folder.mkdir(exist_ok=True)
            atomic_write_text(folder / f"{stage.name}-{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))

        exclude = frozenset(r["prompt"] for r in self.records[index].train if "prompt" in r)
        alignment = self.cfg.stage_guard(index).alignment
        return StageWatch(
            stage.gate,
            stage.probes,
            alignment,
            stage.eval_every,
            self.trained_tasks(index),
            exclude,
            self.tokenizer,
            write,
            self.cfg.data.chat,
        )

    def build(self, index: int, knobs: Knobs) -> tuple[StagePieces, dict[str, Companion]]:
        """Every piece of stage `index`, prepared by accelerate; returns them and the companions. `knobs`
        are the stage's action knobs, which the objective, its plug-ins and the source may read."""
        stage = self.cfg.stages[index]
        start = self.start(index)
        model = self.model(index, start)
        companions = self.companions(index, model, start)
        costs = [name for plugin in stage.plugins for name in plugin.cost_names()]
        ctx = ObjectiveContext(model, self.tokenizer, self.accelerator.device, dict(companions), knobs, costs)
        objective = OBJECTIVES.get(stage.objective.name)(stage.objective, ctx)
        plugins = [STEP_PLUGINS.get(p.name)(p, ctx) for p in stage.plugins]
        plugins += implied_plugins(ctx, self.cfg.model.spiking, [p.name for p in stage.plugins])  # bdh models
        heads = objective.trainable_modules()
        # Placed, not wrapped: with many processes the engine sums gradients itself (trainguard/ranks.py).
        for module in (model, *heads.values()):
            if not is_quantized(module):
                module.to(self.accelerator.device)
        if self.cfg.run.fsdp:  # in place, before the optimizer sees the parameters (now shards)
            shard(model)
        optimizer = build_optimizer({"model": model, **heads}, stage.optimizer, objective.param_group_defaults())
        model, *prepared = (self.accelerator.prepare_model(m, evaluation_mode=True) for m in (model, *heads.values()))
        if self.cfg.run.compile:  # the training forward; unwrap_model hands the plain model to generation and exports
            model = torch.compile(model)
        optimizer = self.accelerator.prepare_optimizer(optimizer)
        source = self.source(index, companions, knobs)
        pieces = StagePieces(
            stage=stage,
            index=index,
            total_steps=stage_steps(stage, len(self.records[index].train)),
            model=model,
            objective=objective,
            source=source,
            optimizer=optimizer,
            heads=dict(zip(heads, prepared, strict=True)),
            plugins=plugins,
            guard=self.guard(index, objective, plugins),
            watch=self.watch(index),
        )
        return pieces, companions


def check_split(where: str, name: str, source: Source, world: int) -> None:
    """A source must shard, and what its step splits must divide over the `world` processes."""
    if not source.shardable:
        shardable = ", ".join(n for n in SOURCES.names() if SOURCES.get(n).shardable)
        raise ConfigError(
            f"{where}.source.name={name!r} does not shard over processes yet (sources that do: "
            f"{shardable}); run this stage with one process"
        )
    key, count = source.split()
    if count % world:
        raise ConfigError(
            f"{where}.{key}={count} must be a multiple of the {world} processes: each takes an equal share of "
            "every step's batch, so the global batch is the same as with one process"
        )
