"""Safety: a risk score per sample with the hinge max(0, risk − threshold).

Risk comes from the constitution's rule lists (readable patterns, not differentiable: violation only) or from a
cost model trained like the reward model plus safe-rlhf's sign term, so that cost > 0 means unsafe and the
default threshold 0 has a meaning (Dai et al. 2023, "Safe RLHF").
"""

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from trainguard.constitution.rules import (
    AUTONOMY_PATTERNS,
    FAIRNESS_PATTERNS,
    HARM_PATTERNS,
    TRUTHFULNESS_PATTERNS,
    Compiled,
    compile_patterns,
    match_rules,
)
from trainguard.constraints.library.base import CONSTRAINT_KINDS, Constraint, ConstraintConfig, check_contexts, hinge

RULE_LISTS = {
    "harm": HARM_PATTERNS,
    "truthfulness": TRUTHFULNESS_PATTERNS,
    "fairness": FAIRNESS_PATTERNS,
    "autonomy": AUTONOMY_PATTERNS,
}


class SafetyConfig(ConstraintConfig):
    name: Literal["safety"] = Field("safety", description="Constraint kind: risk from rules or a cost model.")
    source: Literal["rules", "cost_model"] = Field(
        "rules", description="Where risk comes from: the constitution's pattern lists, or a cost head's scores."
    )
    rules: list[Literal["harm", "truthfulness", "fairness", "autonomy"]] = Field(
        default_factory=lambda: ["harm"], description="source rules: which constitution pattern lists count."
    )
    saturation: int = Field(
        1, gt=0, description="source rules: matched reasons at which risk reaches 1 (risk = min(1, matches / this))."
    )
    threshold: float = Field(
        0.0,
        description="Per-sample risk (rules) or cost (cost_model) above which the hinge is positive; 0 is safe-rlhf's "
        "boundary for costs (cost > 0 means unsafe).",
    )
    cost_key: str = Field("cost", description="source cost_model: the context key holding each sample's cost.")

    @model_validator(mode="after")
    def _some_rules(self) -> "SafetyConfig":
        if self.source == "rules" and not self.rules:
            raise ValueError("rules: name at least one pattern list (harm, truthfulness, fairness, autonomy)")
        return self


def rule_risk(text: str, compiled: Compiled, saturation: int = 1) -> float:
    """Risk in [0, 1]: the number of distinct reasons the rules find, saturating at `saturation`."""
    return min(1.0, len(match_rules(text, compiled)["reasons"]) / saturation)


HARM: Compiled = compile_patterns(HARM_PATTERNS)


def is_harmful(text: str) -> bool:
    """The safety scorer every evaluation uses: harmful when the constitution's harm rules find any reason."""
    return rule_risk(text, HARM) > 0


def cost_hinge(costs: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """mean(max(0, cost − threshold)) over a (B,) batch of cost-head scores: differentiable, zero once safe."""
    return hinge(costs, threshold).mean()


def cost_model_loss(
    cost_safer: torch.Tensor, cost_unsafer: torch.Tensor, safer_is_safe: torch.Tensor, unsafer_is_safe: torch.Tensor
) -> torch.Tensor:
    """safe-rlhf's sequence-wise cost loss on (B,) tensors: the Bradley-Terry term ranks the unsafer response
    higher, and the sign terms pin zero to the safety boundary (sign +1 for unsafe, −1 for safe)."""
    sign_safer = 1.0 - 2.0 * safer_is_safe.float()
    sign_unsafer = 1.0 - 2.0 * unsafer_is_safe.float()
    return (
        -F.logsigmoid(cost_unsafer - cost_safer)
        - F.logsigmoid(sign_safer * cost_safer)
        - F.logsigmoid(sign_unsafer * cost_unsafer)
    ).mean()


@CONSTRAINT_KINDS.register("safety")
class SafetyConstraint(Constraint):
    """Rules: violation = max(0, risk − threshold). Cost model: violation = 1 where cost > threshold (the measured
    unsafe rate), surrogate = mean hinge of the costs."""

    Config = SafetyConfig
    config: SafetyConfig

    def __init__(self, config: SafetyConfig) -> None:
        super().__init__(config)
        self.compiled: Compiled = tuple(p for name in config.rules for p in compile_patterns(RULE_LISTS[name]))

    def violation(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> list[float]:
        cfg = self.config
        if cfg.source == "rules":
            return [hinge(rule_risk(text, self.compiled, cfg.saturation), cfg.threshold) for text in texts]
        out = []
        for i, context in enumerate(check_contexts(texts, contexts)):
            if cfg.cost_key not in context:
                raise ValueError(f"safety (cost_model): context {i} has no {cfg.cost_key!r}")
            out.append(1.0 if float(context[cfg.cost_key]) > cfg.threshold else 0.0)
        return out

    def surrogate(self, costs: torch.Tensor) -> torch.Tensor:
        """Cost model only: mean(max(0, cost − threshold)) over (B,) costs from a cost head."""
        if self.config.source != "cost_model":
            raise NotImplementedError("safety with source rules is not differentiable; use source cost_model")
        return cost_hinge(costs, self.config.threshold)
