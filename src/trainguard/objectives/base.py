"""The objective interface: built once per stage with a context, called by the engine per micro-batch.

An objective owns its loss terms, any trainable heads, a piece of state, how one engine step's batches
become inner updates (PPO: epochs x minibatches) and how its model is evaluated for `best/`."""

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.engine.optim import ParamGroupSection
from trainguard.engine.state import Knobs
from trainguard.registry import Registry
from trainguard.section import Section


class ObjectiveConfig(Section):
    """Base of each objective's config; `name` picks the objective from the registry."""

    name: str


@dataclass
class ObjectiveContext:
    """What an objective (or a step plug-in) may build from: the policy (unwrapped; `.config` has hidden
    size and vocabulary), its tokenizer, the device, the stage's frozen companions (`reference`,
    `reward_model`), the knobs, and the names of the per-rollout costs the stage's plug-ins supply (an RL
    objective builds a cost critic for each)."""

    model: nn.Module
    tokenizer: Any
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    companions: dict[str, Any] = field(default_factory=dict)
    knobs: Knobs = field(default_factory=Knobs)  # multipliers the guard's actions turn (read, never write)
    costs: list[str] = field(default_factory=list)

    @property
    def model_config(self) -> Any:
        return self.model.config


@dataclass
class LossOutput:
    """`terms` are named, differentiable and each summed over the micro-batch's `weight` units (tokens,
    pairs, ...): the engine divides by the units of the whole update, so accumulating k micro-batches
    equals one big batch. The first term is the task loss; plug-ins add theirs. `metrics` are per
    micro-batch values (detached) whose mean over the step is logged; `extras` (e.g. logits) reach the
    plug-ins' terms and are never logged."""

    terms: dict[str, torch.Tensor]
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> torch.Tensor:
        items = iter(self.terms.values())
        total = next(items)
        for term in items:
            total = total + term
        return total


class Objective(ABC):
    Config: ClassVar[type[ObjectiveConfig]]
    #: default metric and direction that pick `best/` (a stage's `best_metric`/`best_mode` override them)
    best_metric: ClassVar[str] = "loss/eval"
    best_mode: ClassVar[Literal["min", "max"]] = "min"
    #: a metric synced after each inner update (but the last) that `stop_early` reads; None = never
    early_stop_key: ClassVar[str | None] = None
    #: the source a stage uses when its config names none
    default_source: ClassVar[str] = "records"
    #: whether a falling loss means progress (the guard's loss detectors watch it); not so for policy gradients
    loss_tracks_progress: ClassVar[bool] = True
    #: whether its step generates (rollouts): every process then decodes in lockstep
    generates: ClassVar[bool] = False

    def __init__(self, config: ObjectiveConfig, ctx: ObjectiveContext) -> None:
        self.config = config
        self.ctx = ctx

    @abstractmethod
    def weight(self, batch: Any) -> int:
        """How many loss units (e.g. target tokens) the micro-batch holds; known before the forward."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> LossOutput: ...

    def trainable_modules(self) -> dict[str, nn.Module]:
        """Modules the objective owns and trains besides the model (a value head, a reward head); they are
        prepared, checkpointed and exported with the model. Build them once, in `__init__`."""
        return {}

    def param_group_defaults(self) -> dict[str, ParamGroupSection]:
        """LR multiplier and weight decay per trainable module, before the stage's `optimizer.groups`."""
        return {}

    def plan(self, batches: list[Any]) -> list[list[Any]]:
        """Inner updates of one engine step: each a list of micro-batches accumulated into one optimizer
        step. Default: one update over everything the source gave (grad_accum micro-batches)."""
        return [batches]

    def stop_early(self, value: float) -> bool:
        """After an inner update, whether to skip the rest (e.g. approx-KL above a target)."""
        return False

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        """Update own state from an applied step's synced numbers (an adaptive KL coefficient); returns
        metrics to log. Not called for skipped steps; a rollback restores the state saved with the
        checkpoint, so updates after it are undone."""
        return {}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        """Held-out metrics (the engine has switched every trainable to eval mode). Default: the loss."""
        total, units = 0.0, 0
        for batch in batches:
            with accelerator.autocast():
                out = self.loss(model, batch.to(accelerator.device))
            total += float(out.total)
            units += self.weight(batch)
        return {"loss/eval": total / max(units, 1)}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027  (stateless by default)
        pass


class StepPluginConfig(Section):
    """Base of each step plug-in's config; `name` picks it from the registry."""

    name: str

    def cost_names(self) -> list[str]:
        """Per-rollout costs this plug-in puts in RL batches (`extras["costs"]`, one column each, in order)."""
        return []


class StepPlugin:
    """A piece beside the objective (a constraint's multiplier), listed in a stage's `plugins`: adds
    differentiable terms to the loss and updates its own state from each applied engine step's synced
    numbers, by the same rule as `Objective.after_step`; the guard's "after" detectors read what it returns.
    Its state is checkpointed under `plugin/<name>` and restored by a rollback."""

    Config: ClassVar[type[StepPluginConfig]] = StepPluginConfig

    def __init__(self, config: StepPluginConfig, ctx: ObjectiveContext) -> None:
        self.config, self.ctx = config, ctx

    @property
    def key(self) -> str:
        return self.config.name

    def prepare(self, batch: Any) -> None:
        """Once per micro-batch the source served, before any forward pass (an RL constraint folds its cost into
        the batch's rewards here, so every objective's advantages see it)."""

    def terms(self, batch: Any, out: LossOutput) -> dict[str, torch.Tensor]:
        """Differentiable terms, each summed over the micro-batch's loss units (`out.extras["units"]`)."""
        return {}

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


OBJECTIVES: Registry[type[Objective]] = Registry("objective")
STEP_PLUGINS: Registry[type[StepPlugin]] = Registry("step plug-in")
