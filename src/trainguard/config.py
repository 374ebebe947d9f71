"""The run file: a pydantic tree validated up front, so a bad field fails before any training starts.

Each field is documented once, where it is declared (each plug-in's config beside its class); this module
assembles the tree. The same text feeds `trainguard config schema` and the README.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, SerializeAsAny, ValidationError, field_validator, model_validator

from trainguard.config_tree import (
    apply_overrides,
    deep_merge,
    format_validation_error,
    resolve_data_paths,
)
from trainguard.data.config import DataSection, DataSource, FileSource, TaskSource
from trainguard.data.sources import SOURCES, RecordSourceConfig, SourceConfig
from trainguard.engine.optim import OptimizerSection
from trainguard.engine.schedule import ScheduleSection
from trainguard.errors import ConfigError
from trainguard.guard.alignment import ProbeConfig
from trainguard.guard.faults import FaultSpec
from trainguard.guard.gates import DeploymentGate, PromotionGate
from trainguard.guard.guard import GuardSection
from trainguard.models.config import PRESET_LR, LoraSection, ModelSection, TokenizerSection
from trainguard.objectives import OBJECTIVES, STEP_PLUGINS, ObjectiveConfig, StepPluginConfig
from trainguard.plugins import load_plugin, resolve_plugin
from trainguard.run_sections import EvalSection, RunSection, TrackingSection
from trainguard.sandbox.limits import SandboxSection
from trainguard.section import Section

__all__ = [
    "DataSection",
    "DataSource",
    "FileSource",
    "LoraSection",
    "ModelSection",
    "OptimizerSection",
    "RunConfig",
    "ScheduleSection",
    "StageSection",
    "TaskSource",
    "TokenizerSection",
    "load_config",
    "parse_config",
]


STAGE_START = ("previous", "base")


class StageSection(Section):
    name: str = Field(
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Stage name (unique in the run; not 'base' or 'previous', which `init` reserves).",
    )
    objective: SerializeAsAny[ObjectiveConfig] = Field(
        description="Objective: a registered name (sft, or a plug-in's), or a mapping {name, ...its keys}."
    )
    source: SerializeAsAny[SourceConfig] = Field(
        default_factory=RecordSourceConfig,
        description="Where batches come from: {name: records} (the run's data, or `data:` of its own), or a "
        "plug-in's source.",
    )
    init: str = Field(
        "previous",
        description="Where the trained model starts: previous (the last stage's export), base (the run's model), "
        "an earlier stage's name, or a model folder.",
    )
    lora: LoraSection | Literal["inherit"] | None = Field(
        "inherit", description="LoRA adapters for this stage: inherit (model.lora), a LoRA mapping, or null (full)."
    )
    freeze_base: bool = Field(False, description="Freeze the model's own weights: only adapters and heads train.")
    reference: Literal["copy", "adapter"] | None = Field(
        None,
        description="Frozen reference policy: copy (of the stage's starting model) or adapter (the policy with its "
        "LoRA adapter off: no second copy); never checkpointed.",
    )
    reward_model: str | None = Field(
        None, description="Frozen reward model: an earlier stage's name or a model folder (with its heads/)."
    )
    cost_model: str | None = Field(
        None,
        description="Frozen cost model: a `cost` stage (or its export folder), read by `safety` constraints.",
    )
    plugins: list[SerializeAsAny[StepPluginConfig]] = Field(
        default_factory=list,
        description="Step plug-ins beside the objective, each {name, ...}: extra loss terms and state updated "
        "after each applied step (constraints).",
    )
    max_steps: int | None = Field(None, gt=0, description="Engine steps in this stage (or set epochs).")
    epochs: float | None = Field(None, gt=0, description="Passes over the training records (or set max_steps).")
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per engine step; loss is normalised over all.")
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection, description="AdamW settings.")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection, description="Warm-up and decay of the LR.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global grad norm to this (seed default 1.0).")
    eval_every: int = Field(100, gt=0, description="Steps between evaluations (and at the end).")
    save_every: int = Field(500, gt=0, description="Steps between checkpoints (and at the end).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints; null keeps all.")
    best_metric: str | None = Field(
        None, description="Eval metric that picks best/ (default: the objective's, loss/eval for sft)."
    )
    best_mode: Literal["min", "max"] | None = Field(
        None, description="Whether lower or higher best_metric is better (default: the objective's)."
    )
    guard: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the run's guard settings for this stage (same keys)."
    )
    gate: PromotionGate | None = Field(
        None,
        description="Promotion gate: held-out checks every N steps with criteria on their statistics; a rejection "
        "is a critical `gate` alert that the guard's policy turns into a rollback (default) or a stop.",
    )
    probes: list[ProbeConfig] = Field(
        default_factory=list,
        description="Capability probes: named held-out evaluations every N steps, read by the alignment detectors "
        "(capability spike, unexpected capability, objective misalignment, behaviour drift).",
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in STAGE_START:
            raise ValueError(f"{value!r} is reserved: `init: {value}` names it; call the stage something else")
        return value

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, value: Any) -> Any:
        return OBJECTIVES.config_of(value)

    @model_validator(mode="before")
    @classmethod
    def _default_source(cls, value: Any) -> Any:
        """A stage that names no source gets its objective's (records for sft, pairs for reward)."""
        if isinstance(value, dict) and "source" not in value:
            objective = value.get("objective")
            name = objective.get("name") if isinstance(objective, dict) else objective
            if isinstance(name, str) and name in OBJECTIVES:
                return {**value, "source": {"name": OBJECTIVES.get(name).default_source}}
        return value

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: Any) -> Any:
        return SOURCES.config_of(value)

    @field_validator("plugins", mode="before")
    @classmethod
    def _step_plugins(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        names = [v.get("name") if isinstance(v, dict) else v for v in value]
        if len(set(names)) != len(names):
            raise ValueError(f"each step plug-in may appear once; got {names}")
        return [STEP_PLUGINS.config_of(v) for v in value]

    @model_validator(mode="after")
    def _length(self) -> "StageSection":
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of 'max_steps' or 'epochs'")
        return self


class RunConfig(Section):
    run: RunSection = Field(description="Name, seed and where the run folder goes.")
    model: ModelSection = Field(description="What is trained: a preset or a local Hugging Face folder.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="Tokenizer and length.")
    data: DataSection = Field(description="Training records and the held-out split.")
    stages: list[StageSection] = Field(min_length=1, description="Stages run in order in one run folder.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out task accuracy before and after.")
    tracking: TrackingSection = Field(default_factory=TrackingSection, description="Mirrors and progress display.")
    sandbox: SandboxSection = Field(
        default_factory=SandboxSection, description="Where sandboxed programs run: here, or across a Ray cluster."
    )
    guard: GuardSection = Field(default_factory=GuardSection, description="Detectors, policies and rollback.")
    deployment: DeploymentGate | None = Field(
        None,
        description="Deployment gate on the final model: its verdict goes to final/verdict.json, and a rejection "
        "makes `trainguard run` exit 4 (on_reject: fail).",
    )
    faults: list[FaultSpec] = Field(default_factory=list, description="Faults injected on purpose (tests, demos).")
    imports: list[str] = Field(
        default_factory=list,
        description="Python files (relative to this file or the working directory) or modules imported first: "
        "the objectives, sources, step plug-ins and actions they register become usable names.",
    )

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageSection]) -> list[StageSection]:
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        return stages

    @model_validator(mode="after")
    def _preset_defaults(self) -> "RunConfig":
        """A preset trained from scratch (the first stage, or `init: base`): a stage that sets no LR gets the
        preset's (PRESET_LR), and one that sets no warm-up warms up for 10% of its max_steps (at most the
        seed's 100). The resolved config records the values used."""
        if self.model.preset is None:
            return self
        for index, stage in enumerate(self.stages):
            if not (stage.init == "base" or (index == 0 and stage.init == "previous")):
                continue  # a stage that starts from a trained model fine-tunes it: the seed defaults stand
            if "lr" not in stage.optimizer.model_fields_set:
                stage.optimizer.lr = PRESET_LR[self.model.preset]
                stage.optimizer.model_fields_set.add("lr")
            if "warmup_steps" not in stage.schedule.model_fields_set and stage.max_steps is not None:
                stage.schedule.warmup_steps = min(stage.schedule.warmup_steps, stage.max_steps // 10)
                stage.schedule.model_fields_set.add("warmup_steps")
        return self

    @model_validator(mode="after")
    def _faults_in_range(self) -> "RunConfig":
        """A fault scheduled after the run's last step would never fire: a test of nothing."""
        if not self.faults or any(s.max_steps is None for s in self.stages):
            return self
        last = sum(s.max_steps or 0 for s in self.stages)
        late = [
            f"faults.{i}.at_step: {f.at_step} is after the run's last step ({last})"
            for i, f in enumerate(self.faults)
            if f.at_step > last
        ]
        if late:
            raise ValueError("\n".join(late))
        return self

    @model_validator(mode="after")
    def _stage_links(self) -> "RunConfig":
        """Each stage's `init`, `reward_model` and `cost_model` name an earlier stage or an existing model folder; an
        `adapter` reference needs LoRA; guard overrides are valid guard settings."""
        problems = []
        names = [s.name for s in self.stages]
        for i, stage in enumerate(self.stages):
            earlier = names[:i]
            links = (("init", stage.init, STAGE_START), ("reward_model", stage.reward_model, ()))
            for key, value, fixed in (*links, ("cost_model", stage.cost_model, ())):
                if value is None or value in fixed or value in earlier:
                    continue
                if value in names:
                    problems.append(f"stages.{i}.{key}: {value!r} is this stage or a later one; name an earlier one")
                elif not (Path(value) / "config.json").is_file():
                    allowed = ", ".join([*fixed, *earlier]) or "none"
                    problems.append(
                        f"stages.{i}.{key}: {value!r} is neither an earlier stage nor a model folder with a "
                        f"config.json (earlier names: {allowed})"
                    )
            if stage.reference == "adapter" and self.stage_lora(i) is None:
                problems.append(f"stages.{i}.reference: 'adapter' needs LoRA (set lora here or model.lora)")
            try:
                self.stage_guard(i)
            except ValidationError as err:
                problems.append(format_validation_error(err, f"stages.{i}.guard").replace(": <root>", ""))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _fsdp_scope(self) -> "RunConfig":
        """What run.fsdp covers today; anything else is refused by field rather than left to hang a collective."""
        if not self.run.fsdp:
            return self
        problems = [f"model.{key} (set)" for key in ("quantize", "lora") if getattr(self.model, key) is not None]
        if self.run.compile:
            problems.append("run.compile: true")
        if self.run.mixed_precision == "fp16":
            problems.append("run.mixed_precision: fp16 (its loss scaler reads one process's shards)")
        problems += [f"faults.{i}.kind: dead_units" for i, f in enumerate(self.faults) if f.kind == "dead_units"]
        for i, stage in enumerate(self.stages):
            if OBJECTIVES.get(stage.objective.name).generates:
                problems.append(f"stages.{i}.objective={stage.objective.name!r} (it generates while it trains)")
            every = self.stage_guard(i).generation.every  # sample checks: sampled lengths differ by rank
            used = {
                "lora": self.stage_lora(i),
                "reference": stage.reference,
                "gate": stage.gate,
                "probes": stage.probes,
            }
            used["guard.generation.every"] = every
            problems += [f"stages.{i}.{key} (set)" for key, value in used.items() if value]
        if problems:
            raise ValueError(
                "run.fsdp: true covers full fine-tuning of stages that do not generate while they train (sft, "
                "reward, cost); not with: " + ", ".join(problems)
            )
        return self

    def stage_lora(self, index: int) -> LoraSection | None:
        lora = self.stages[index].lora
        return self.model.lora if lora == "inherit" else lora  # type: ignore[return-value]

    def stage_guard(self, index: int) -> GuardSection:
        """The run's guard with the stage's overrides merged in, key by key."""
        overrides = self.stages[index].guard
        if not overrides:
            return self.guard
        return GuardSection.model_validate(deep_merge(self.guard.model_dump(), overrides))

    @property
    def run_dir(self) -> Path:
        return self.run.out_dir / self.run.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def parse_config(tree: Any, source: str = "config", base: Path | None = None) -> RunConfig:
    """Validate a parsed run file; its `imports` are imported first (files resolved against `base`)."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (run, model, data, stages, ...)")
    imports = tree.get("imports") or []
    if not isinstance(imports, list):
        raise ConfigError(f"{source}: imports: expected a list of Python files or module names")
    tree["imports"] = [resolve_plugin(str(p), base or Path.cwd()) for p in imports]
    for entry in tree["imports"]:
        load_plugin(entry)
    resolve_data_paths(tree, base or Path.cwd())
    from trainguard.tasks.aliases import apply_affine_layout  # the task registry loads on first use

    apply_affine_layout(tree)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def load_config(path: Path | str, overrides: list[str] | None = None) -> RunConfig:
    """Read, override (`key.path=value`, value parsed as YAML) and validate a run file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    apply_overrides(tree if isinstance(tree, dict) else {}, overrides or [])
    return parse_config(tree, str(path), path.parent)
