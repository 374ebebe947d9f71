"""Constraints in a training stage: `plugins: [{name: constraints, constraints: [...]}]`.

Each constraint has a multiplier (a `DualOptimizer` entry: target, controller, dual rate, λ_max) and a measure
from the library (`measure: {name: format, kind: regex, pattern: ...}`). The measured violation, never
differentiated, drives λ; the gradient comes from where the stage can take it:
- **RL stages** (rollouts, episodes): each response's violation v_k is a cost handed to the objective with its
  λ_k. PPO learns a cost critic per constraint and follows (A_r − Σ λ_k A_k) / (1 + Σ λ_k) (PPO-Lagrangian);
  GRPO charges the rewards, r' = (r − Σ λ_k v_k) / (1 + Σ λ_k) (its advantages are linear in them). The step's
  mean violation updates λ.
- **SFT stages**: the measure's differentiable surrogate on the batch's completion tokens (format: the
  probability mass on bytes that break the structure, or the NLL) enters the loss as λ_k · L_k (the constant
  −λ_k c_k of the Lagrangian has no gradient); greedy answers to `prompts` every `measure_every` steps update λ.
"""

from typing import Any, Literal

import torch
from pydantic import Field, SerializeAsAny, field_validator

from trainguard.constraints.dual import ConstraintSpec, DualConfig, DualOptimizer
from trainguard.constraints.library import (
    CONSTRAINT_KINDS,
    ConstraintConfig,
    FormatConstraint,
    ParamL1Constraint,
    build_constraint,
)
from trainguard.constraints.schedules import PhaseTighteningConfig, TargetSchedule
from trainguard.data.rollouts import RolloutBatch
from trainguard.data.sources import generating
from trainguard.errors import ConfigError
from trainguard.eval.accuracy import generate_text, heldout_instances
from trainguard.objectives.base import STEP_PLUGINS, LossOutput, ObjectiveContext, StepPlugin, StepPluginConfig
from trainguard.objectives.cost import COST_KEY
from trainguard.rl.rewards import score_texts
from trainguard.tasks import build_task

IN_STAGE_ONLY_BY_API = {  # library kinds a stage cannot measure yet, and what they lack
    "plan": "a target plan per sample: no built-in task has plans",
    "reuse": "a model's skill-selection probabilities",
}


class StageConstraint(ConstraintSpec):
    measure: SerializeAsAny[ConstraintConfig] = Field(
        description="How the violation is measured: a library kind, {name: format | safety | plan | ..., ...}."
    )

    @field_validator("measure", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        config = CONSTRAINT_KINDS.config_of(value)
        if getattr(config, "name", None) in IN_STAGE_ONLY_BY_API:
            raise ValueError(
                f"{config.name} needs what no built-in stage provides ({IN_STAGE_ONLY_BY_API[config.name]}); "
                "use it through trainguard.constraints.library; in a stage: format, safety, param_l1"
            )
        return config


class ConstraintsConfig(StepPluginConfig):
    name: Literal["constraints"] = "constraints"
    constraints: list[StageConstraint] = Field(min_length=1, description="Each {name, target, controller, measure}.")
    schedule: TargetSchedule | None = Field(None, description="Targets by step: {0: {name: t}, 25: {...}}.")
    tightening: PhaseTighteningConfig | None = Field(None, description="Exploration → refinement → hardening.")
    measure_every: int = Field(10, gt=0, description="SFT: steps between greedy measurements (RL: every step).")
    task: str | None = Field(None, description="SFT: the task whose held-out prompts are answered to measure.")
    params: dict[str, Any] = Field(default_factory=dict, description="That task's parameters.")
    prompts: int = Field(64, gt=0, description="SFT: held-out prompts answered per measurement.")
    max_new_tokens: int = Field(32, gt=0, description="SFT: longest measured answer.")
    satisfaction_window: int = Field(50, gt=0, description="Updates over which the satisfaction rate is reported.")
    max_length: int = Field(512, gt=0, description="Longest prompt + response the cost model reads.")

    def cost_names(self) -> list[str]:
        """The constraints measured on each response (param_l1 is measured on the weights: no cost)."""
        return [c.name for c in self.constraints if c.measure.name != "param_l1"]


@STEP_PLUGINS.register("constraints")
class ConstraintsPlugin(StepPlugin):
    Config = ConstraintsConfig
    config: ConstraintsConfig

    def __init__(self, config: ConstraintsConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        specs = [c.model_dump(exclude={"measure"}) for c in config.constraints]
        dual = {"constraints": specs, "schedule": config.schedule, "tightening": config.tightening}
        self.dual = DualOptimizer(DualConfig.model_validate(dual))
        self.measures = {c.name: build_constraint(c.measure) for c in config.constraints}
        self.steps = 0
        self.pending: dict[str, float] | None = None  # this step's measured violations (RL: from its rollouts)
        self.byte_level = is_byte_level(ctx.tokenizer)  # the format surrogate reads token ids as bytes
        needs_costs = [c.name for c in config.constraints if getattr(c.measure, "source", None) == "cost_model"]
        self.cost_model = ctx.companions.get("cost_model") if needs_costs else None
        if needs_costs and (self.cost_model is None or COST_KEY not in (self.cost_model.heads or {})):
            raise ConfigError(
                f"constraints {', '.join(needs_costs)}: safety with source cost_model needs the stage's `cost_model:` "
                "(a `cost` stage or its export, with heads/cost/)"
            )
        self.prompts: list[str] = []
        if config.task is not None:
            task = build_task(config.task, config.params)
            self.prompts = [i.prompt for i in heldout_instances(task, config.prompts, set())]

    def prepare(self, batch: Any) -> None:
        """RL: each response's violations become its costs (B, K) with their λ (B, K), for the objective to
        charge (GRPO: in the rewards; PPO: through a cost critic each); the step's mean updates λ."""
        if not isinstance(batch, RolloutBatch) or not batch.texts:
            return
        names = self.config.cost_names()
        if not names:
            return
        contexts = self.cost_contexts(batch)
        violations = {k: self.measures[k].violation(batch.texts, contexts) for k in names}
        lams = self.dual.get_dual_values()
        batch.extras["costs"] = torch.tensor(list(violations.values()), dtype=torch.float32).T  # (B, K)
        weights = [lams[k] for k in names]
        batch.extras["cost_weights"] = torch.tensor([weights] * len(batch.texts), dtype=torch.float32)
        self.pending = {k: sum(v) / len(v) for k, v in violations.items()}

    def cost_contexts(self, batch: RolloutBatch) -> list[dict[str, float]] | None:
        """Each response's cost from the stage's `cost_model` (for `safety` with source cost_model)."""
        if self.cost_model is None:
            return None
        model, head = self.cost_model.module.module, self.cost_model.heads[COST_KEY]
        costs = score_texts(model, head, self.ctx.tokenizer, batch.prompts, batch.texts, self.config.max_length)
        return [{"cost": c} for c in costs]

    def terms(self, batch: Any, out: LossOutput) -> dict[str, torch.Tensor]:
        """λ_k · L_k for the surrogates the step can compute: format on an SFT batch's completion logits, the
        adapter's L1 on the model (any stage). Token batches only reach here with logits in `extras` (SFT)."""
        lams, units, terms = self.dual.get_dual_values(), out.extras.get("units", 1), {}
        for name, measure in self.measures.items():
            if lams[name] == 0:
                continue
            if isinstance(measure, ParamL1Constraint):
                terms[f"constraint_{name}"] = lams[name] * measure.surrogate(self.ctx.model) * units
            elif isinstance(measure, FormatConstraint) and self.byte_level and "logits" in out.extras:
                if getattr(batch, "position_ids", None) is not None:
                    raise ConfigError(
                        f"constraint {name!r}: the format surrogate reads one example per row, but the stage's "
                        "source packs several; set source.packing: false"
                    )
                # the mass on bytes that break the format (the NLL of the completion is the SFT loss already)
                mask = batch.completion_mask & (batch.input_ids < 256)  # the completion's bytes, not its EOS
                start = out.extras.get("logits_start", 0)  # SFT's logits begin at its earliest target's predictor
                surrogate = measure.bad_mass(out.extras["logits"], batch.input_ids[:, start:], mask[:, start:])
                terms[f"constraint_{name}"] = lams[name] * surrogate * units
        return terms

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        """Move λ from this step's measurements: RL rollouts (every step), the weights (param_l1, every step),
        or greedy answers to held-out prompts (SFT, every `measure_every` steps); λ waits for all of them."""
        self.steps += 1
        self.dual.set_step(self.steps, int(metrics.get("data/epoch", 0.0)))
        measured, self.pending = self.pending or {}, None
        for name, measure in self.measures.items():
            if isinstance(measure, ParamL1Constraint):
                measured[name] = measure.module_value(self.ctx.model)
        missing = [k for k in self.measures if k not in measured]
        if missing and self.prompts and self.steps % self.config.measure_every == 0:
            with generating(self.ctx.model) as model:
                texts = generate_text(model, self.ctx.tokenizer, self.prompts, self.config.max_new_tokens)
            measured |= {k: self.measures[k].value(texts) for k in missing}
        if set(measured) == set(self.measures):
            self.dual.update_duals(measured)
        rates = self.dual.satisfaction_rate(self.config.satisfaction_window)
        return self.dual.metrics() | {f"constraint/{k}/satisfaction": v for k, v in rates.items() if v == v}

    def state_dict(self) -> dict[str, Any]:
        return {"dual": self.dual.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dual.load_state_dict(state["dual"])
        self.steps = int(state["steps"])


def is_byte_level(tokenizer: Any) -> bool:
    """Whether token ids 0-255 are the bytes themselves (trainguard's byte tokenizer), as `bad_mass` assumes."""
    try:
        return tokenizer.convert_ids_to_tokens(97) == "a" and tokenizer.decode([104, 105]) == "hi"
    except Exception:
        return False
