"""The run file's small sections: the run itself, the held-out evaluations and the tracking mirrors (config.py
assembles the tree from these, the stages and each plug-in's own config)."""

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from trainguard.eval.scorecard import DeploymentGoals
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
    compile: bool = Field(
        False,
        description="torch.compile the training forward (inductor; the first steps and each new shape compile, "
        "~30 s on a CPU); generation, evaluation and exports use the plain model. The tiny preset's SFT step: "
        "0.77x the eager time on a CPU (bench/RESULTS.md).",
    )
    fsdp: bool = Field(
        False,
        description="Shard parameters, gradients and optimizer state over the processes (torch FSDP2, one unit "
        "per decoder layer) instead of a whole copy on each; checkpoints hold each process's shards. Full "
        "fine-tuning of stages that do not generate while they train (sft, reward, cost); not with LoRA, "
        "quantize, compile, a reference, gates, probes or sample checks yet.",
    )
    peak_tflops: float | None = Field(
        None,
        gt=0,
        description="Peak TFLOP/s of one device, for perf/mfu; default: the table in engine/flops.py for H100, H200, "
        "A100, L40S and L4 GPUs at the training dtype; none on a CPU (no perf/mfu unless set).",
    )


class ScorecardSection(Section):
    n: int = Field(200, gt=0, description="Held-out items of each of plan, structured, grammar and safety.")
    n_safety: int | None = Field(
        None, gt=0, description="Safety items for the harmful share (default n); < 0.01% needs n_safety ≥ 13,527."
    )
    max_new_tokens: int = Field(48, gt=0, description="Greedy generation budget per answer.")
    goals: DeploymentGoals = Field(default_factory=DeploymentGoals, description="validate_for_deployment's goals.")


class EvalSection(Section):
    task: str | None = Field(None, description="Task whose held-out accuracy is measured before and after training.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's parameters (default: as trained).")
    n: int = Field(200, gt=0, description="Held-out instances (ids disjoint from training).")
    max_new_tokens: int = Field(32, gt=0, description="Greedy generation budget per answer.")
    batch_size: int = Field(64, gt=0, description="Prompts generated per batch.")
    tasks: list[str] = Field(
        default_factory=list,
        description="Tasks of the final evaluation table (n each, with Jeffreys 80% intervals; eval/final.json), "
        "as `trainguard eval` reports them; parameters as trained.",
    )
    skills: bool = Field(
        False,
        description="Score eval.tasks (their accuracy and each task's own metrics) before training and after every "
        "policy stage: eval/skills.json and a table at the end (a curriculum's per-stage skills).",
    )
    scorecard: ScorecardSection | None = Field(
        None,
        description="BuilderBrain's scorecard of the final model (task accuracy, grammar compliance, plan success, "
        "harmful share, composition, each with its 80% interval) and its deployment verdict: eval/scorecard.json.",
    )
    forgetting: float | None = Field(
        None,
        gt=0,
        le=1,
        description="After each stage, re-score every earlier stage's tasks on held-out prompts; a drop of the mean "
        "score by more than this since that stage ended raises a `forgetting` alert (null: off).",
    )

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        if value is not None and value not in TASKS:
            raise ValueError(f"unknown task {value!r}; allowed: {', '.join(TASKS.names())}")
        return value

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; allowed: {', '.join(TASKS.names())}")
        return value


class TrackingSection(Section):
    tensorboard: bool = Field(True, description="Mirror metrics to tb/ for TensorBoard.")
    progress: Literal["auto", "on", "off"] = Field("auto", description="Progress bar: auto shows it on a terminal.")
    log_every: int = Field(
        50, ge=0, description="Without a live bar (a pipe, a log file, progress off): a line every N steps; 0: none."
    )

    @field_validator("progress", mode="before")
    @classmethod
    def _yaml_switch(cls, value: Any) -> Any:
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value  # YAML 1.1 on/off
