"""The run file: a pydantic tree validated up front, so a bad field fails before any training starts.

Each field is documented once, here; the same text feeds `trainguard config schema` and the README.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from trainguard.errors import ConfigError
from trainguard.guard.faults import FaultSpec
from trainguard.guard.guard import GuardSection
from trainguard.objectives import OBJECTIVES
from trainguard.section import Section
from trainguard.tasks import TASKS


class RunSection(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="Run name; the folder is out_dir/name.")
    seed: int = Field(0, description="Seeds model init, data order and every RNG; saved and restored on resume.")
    out_dir: Path = Field(Path("runs"), description="Parent folder of run folders.")
    threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads (default: torch's). Resume is bit-exact only with the same count.",
    )
    deterministic: bool = Field(True, description="Ask torch for deterministic kernels (exact resume on one device).")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = Field(
        "auto", description="Autocast precision; auto = bf16 on a GPU that supports it, else none (CPU)."
    )


class LoraSection(Section):
    r: int = Field(64, ge=1, description="LoRA rank (seed default 64).")
    alpha: float = Field(
        128, gt=0, description="LoRA scaling numerator: updates scale by alpha / r (seed default 128)."
    )
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input (seed default 0.05).")
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="Module names that get adapters (seed default: attention and MLP projections).",
    )


class ModelSection(Section):
    preset: Literal["tiny", "small", "base"] | None = Field(
        None, description="Llama-style model built from a config with random init: tiny ~1M, small ~10M, base ~50M."
    )
    path: str | None = Field(None, description="Local folder of a Hugging Face causal LM (loaded offline).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="Dtype of the weights.")
    lora: LoraSection | None = Field(None, description="Train LoRA adapters (peft) instead of all weights.")

    @field_validator("path")
    @classmethod
    def _local_model(cls, path: str | None) -> str | None:
        if path is not None and not (Path(path) / "config.json").is_file():
            raise ValueError(f"{path!r} is not a local Hugging Face model folder (no config.json)")
        return path

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSection":
        if (self.preset is None) == (self.path is None):
            raise ValueError("set exactly one of 'preset' (tiny, small, base) or 'path'")
        return self


class TokenizerSection(Section):
    path: str | None = Field(
        None, description="Local tokenizer folder; default: the model folder's, or the byte-level one for presets."
    )
    max_length: int = Field(256, ge=8, description="Longest tokenised example; longer ones are truncated and counted.")


class TaskSource(Section):
    task: str = Field(description="Registered task that generates records from integer ids.")
    n: int = Field(gt=0, description="Number of records (ids start .. start+n-1).")
    start: int = Field(0, ge=0, description="First instance id.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's own parameters.")

    @model_validator(mode="after")
    def _known_task(self) -> "TaskSource":
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; allowed: {', '.join(TASKS.names())}")
        TASKS.get(self.task).Config.model_validate(self.params)
        return self


class FileSource(Section):
    path: Path = Field(description="JSONL file of {prompt, completion} records.")


def _source_kind(value: Any) -> str:
    is_file = isinstance(value, FileSource) or (isinstance(value, dict) and "path" in value)
    return "file" if is_file else "task"


DataSource = Annotated[
    Union[Annotated[TaskSource, Tag("task")], Annotated[FileSource, Tag("file")]],  # noqa: UP007
    Discriminator(_source_kind),
]


class DataSection(Section):
    sources: list[DataSource] = Field(
        min_length=1, description="Record sources, concatenated: {task, n, start, params} or {path}."
    )
    eval_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of records held out for eval loss (default 90/10)."
    )


class OptimizerSection(Section):
    name: Literal["adamw"] = Field("adamw", description="Optimizer (torch AdamW).")
    lr: float = Field(2e-5, gt=0, description="Peak learning rate (seed default 2e-5).")
    weight_decay: float = Field(0.01, ge=0, description="Decoupled weight decay on matrices (seed default 0.01).")
    betas: tuple[float, float] = Field((0.9, 0.999), description="Adam betas.")
    eps: float = Field(1e-8, gt=0, description="Adam epsilon.")


class ScheduleSection(Section):
    name: Literal["cosine", "constant"] = Field("cosine", description="LR schedule after warm-up.")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps (seed default 100).")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="Final LR as a share of the peak (seed default 0.1).")


def _objective_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


ObjectiveSpec = Annotated[
    Union[tuple(OBJECTIVES.get(n).Config for n in OBJECTIVES)],  # type: ignore[misc]  # noqa: UP007
    Field(discriminator="name"),
    BeforeValidator(_objective_shorthand),
]


class StageSection(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$", description="Stage name (unique in the run).")
    objective: ObjectiveSpec = Field(description=f"Objective: one of {', '.join(OBJECTIVES.names())}.")
    max_steps: int | None = Field(None, gt=0, description="Optimizer steps in this stage (or set epochs).")
    epochs: float | None = Field(None, gt=0, description="Passes over the training records (or set max_steps).")
    batch_size: int = Field(8, gt=0, description="Examples per micro-batch.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per optimizer step; loss is normalised over all.")
    optimizer: OptimizerSection = Field(default_factory=OptimizerSection, description="AdamW settings.")
    schedule: ScheduleSection = Field(default_factory=ScheduleSection, description="Warm-up and decay of the LR.")
    max_grad_norm: float | None = Field(1.0, gt=0, description="Clip the global grad norm to this (seed default 1.0).")
    eval_every: int = Field(100, gt=0, description="Steps between eval-loss passes (and at the end).")
    save_every: int = Field(500, gt=0, description="Steps between checkpoints (and at the end).")
    save_total_limit: int | None = Field(3, ge=1, description="Keep at most this many checkpoints; null keeps all.")

    @model_validator(mode="after")
    def _length(self) -> "StageSection":
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of 'max_steps' or 'epochs'")
        return self


class EvalSection(Section):
    task: str | None = Field(None, description="Task whose held-out accuracy is measured before and after training.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's parameters (default: as trained).")
    n: int = Field(200, gt=0, description="Held-out instances (ids disjoint from training).")
    max_new_tokens: int = Field(32, gt=0, description="Greedy generation budget per answer.")
    batch_size: int = Field(64, gt=0, description="Prompts generated per batch.")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None and value not in TASKS:
            raise ValueError(f"unknown task {value!r}; allowed: {', '.join(TASKS.names())}")
        return value


class TrackingSection(Section):
    tensorboard: bool = Field(True, description="Mirror metrics to tb/ for TensorBoard.")
    progress: Literal["auto", "on", "off"] = Field("auto", description="Progress bar: auto shows it on a terminal.")


class RunConfig(Section):
    run: RunSection = Field(description="Name, seed and where the run folder goes.")
    model: ModelSection = Field(description="What is trained: a preset or a local Hugging Face folder.")
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection, description="Tokenizer and length.")
    data: DataSection = Field(description="Training records and the held-out split.")
    stages: list[StageSection] = Field(min_length=1, description="Stages run in order in one run folder.")
    eval: EvalSection = Field(default_factory=EvalSection, description="Held-out task accuracy before and after.")
    tracking: TrackingSection = Field(default_factory=TrackingSection, description="Mirrors and progress display.")
    guard: GuardSection = Field(default_factory=GuardSection, description="Detectors, policies and rollback.")
    faults: list[FaultSpec] = Field(default_factory=list, description="Faults injected on purpose (tests, demos).")

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageSection]) -> list[StageSection]:
        names = [s.name for s in stages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"stage names must be unique; repeated: {', '.join(dupes)}")
        return stages

    @property
    def run_dir(self) -> Path:
        return self.run.out_dir / self.run.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per bad field: `source: path.to.field: message (got value)`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith(("function-", "tagged-union")))
        msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        got = "" if e["type"] in ("missing", "value_error") else f" (got {e.get('input')!r:.60})"
        lines.append(f"{source}: {loc or '<root>'}: {msg}{got}")
    return "\n".join(lines)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Apply a `--set a.b.0.c=value` override to a parsed YAML tree."""
    keys = dotted.split(".")
    node: Any = tree
    for key in keys[:-1]:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_config(tree: Any, source: str = "config") -> RunConfig:
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (run, model, data, stages, ...)")
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
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE")
        try:
            set_dotted(tree if isinstance(tree, dict) else {}, key, yaml.safe_load(raw))
        except (IndexError, ValueError, TypeError, KeyError):
            raise ConfigError(f"--set {item!r}: no such place in the config") from None
    return parse_config(tree, str(path))
