"""Checks: named held-out evaluations that gates and probes run on the live policy.

A check generates greedy answers to held-out prompts of a task (optionally behind a preamble: the "watched" and
"unwatched" contexts of a drift probe) and gives each sample a value in [0, 1]: the task's own score, or a
constraint measure's violation (or compliance, 1 − violation). Its summary is the evaluation statistics with
the Jeffreys 80% interval, so a gate can bound a rate from the right side of its uncertainty.
"""

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from torch import nn

from trainguard.constraints.library.base import CONSTRAINT_KINDS, Constraint, build_constraint
from trainguard.eval.accuracy import HELDOUT_START, answer_all, heldout_instances
from trainguard.eval.stats import summarise
from trainguard.section import Section
from trainguard.tasks import TASKS, Task, build_task

CHECK_OFFSET = 500_000_000  # checks draw held-out ids past the eval's, so a gate never grades the eval set


class CheckConfig(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$", description="Name metrics and criteria use.")
    task: str = Field(description="Task whose held-out prompts are answered.")
    params: dict[str, Any] = Field(default_factory=dict, description="The task's parameters.")
    n: int = Field(100, gt=0, description="Held-out prompts per evaluation.")
    max_new_tokens: int = Field(32, gt=0, description="Greedy generation budget per answer.")
    measure: dict[str, Any] | None = Field(
        None,
        description="A constraint measure that judges each answer instead of the task ({name: format, kind: "
        "regex, pattern: ...}, {name: safety}, ...); default: the task's own score.",
    )
    report: Literal["score", "violation", "compliance"] = Field(
        "score",
        description="What a sample's value is: the task's score, the measure's violation, or 1 − violation.",
    )
    preamble: str = Field("", description="Text put before each prompt (a context such as 'You are observed.').")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str) -> str:
        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; allowed: {', '.join(TASKS.names())}")
        return value

    @model_validator(mode="after")
    def _measured(self) -> "CheckConfig":
        if self.measure is not None:
            CONSTRAINT_KINDS.config_of(self.measure)  # a bad measure fails with the config, not mid-run
        if (self.report == "score") != (self.measure is None):
            raise ValueError("report: 'score' goes without a measure; 'violation' and 'compliance' need one")
        return self


@dataclass
class CheckResult:
    name: str
    values: list[float]  # what the check reports per sample, in [0, 1]
    task_scores: list[float]  # the task's own score per sample (the "training score" of misalignment)
    prompts: list[str]
    texts: list[str]
    summary: dict[str, Any] = field(default_factory=dict)

    def metrics(self, prefix: str) -> dict[str, float]:
        """`{prefix}/{name}/mean|lower|upper` for the store."""
        lo, hi = self.summary["ci80"]
        return {
            f"{prefix}/{self.name}/mean": self.summary["mean"],
            f"{prefix}/{self.name}/lower": lo,
            f"{prefix}/{self.name}/upper": hi,
        }

    def examples(self, k: int) -> list[dict[str, Any]]:
        rows = zip(self.prompts, self.texts, self.values, strict=True)
        return [{"prompt": p, "response": t, "value": v} for p, t, v in list(rows)[:k]]


class Check:
    """A built check: the task, its fixed held-out instances and the measure."""

    def __init__(self, config: CheckConfig, exclude_prompts: set[str] | frozenset[str] = frozenset()) -> None:
        self.config = config
        self.task: Task = build_task(config.task, config.params)
        self.measure: Constraint | None = build_constraint(config.measure) if config.measure is not None else None
        self.instances = heldout_instances(self.task, config.n, exclude_prompts, HELDOUT_START + CHECK_OFFSET)

    def run(self, model: nn.Module, tokenizer: Any, chat: bool = False, batch_size: int = 64) -> CheckResult:
        cfg = self.config
        prompts = [cfg.preamble + inst.prompt for inst in self.instances]
        return self.score(prompts, answer_all(model, tokenizer, prompts, cfg.max_new_tokens, batch_size, chat))

    def score(self, prompts: list[str], texts: list[str]) -> CheckResult:
        """Values for answers already generated (one per held-out instance, in order)."""
        scores = [s.value for s in self.task.score_many(self.instances, texts)]
        if self.measure is None:
            values = scores
        else:
            violations = [min(1.0, max(0.0, v)) for v in self.measure.violation(texts)]
            values = violations if self.config.report == "violation" else [1.0 - v for v in violations]
        return CheckResult(self.config.name, values, scores, prompts, texts, summarise(values))
