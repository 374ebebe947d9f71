"""What every constraint kind shares: its config base, the registry, the hinge and the structure NLL.

A constraint gives a *measured* violation per sample (non-differentiable, in [0, 1]; the constraint's value is
the mean) for the dual update, and, where it makes sense, a differentiable surrogate for the primal loss.
"""

from typing import Any, ClassVar, TypeVar, overload

import torch
import torch.nn.functional as F
from pydantic import Field

from trainguard.registry import Registry
from trainguard.section import Section

Number = TypeVar("Number", float, torch.Tensor)


class ConstraintConfig(Section):
    """Parameters of one constraint kind; each kind declares its own subclass beside it."""

    name: str = Field(description="Which constraint kind measures this (format, safety, plan, reuse, param_l1).")
    target: float = Field(
        0.0, description="The bound c: the constraint asks for value ≤ target, and the hinge is max(0, value − c)."
    )


class Constraint:
    """A measured violation per sample, plus a differentiable surrogate where one exists."""

    Config: ClassVar[type[ConstraintConfig]] = ConstraintConfig

    def __init__(self, config: ConstraintConfig) -> None:
        self.config = config

    def violation(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> list[float]:
        """Per sample, in [0, 1]; `contexts[i]` carries what sample i is judged against (a target plan, ...)."""
        raise NotImplementedError(f"constraint {self.config.name!r} is not measured from texts")

    def value(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> float:
        """The measured constraint value: the mean violation (0.0 for no samples)."""
        scores = self.violation(texts, contexts)
        return sum(scores) / len(scores) if scores else 0.0

    def surrogate(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise NotImplementedError(f"constraint {self.config.name!r} has no differentiable surrogate")


CONSTRAINT_KINDS: Registry[type[Constraint]] = Registry("constraint")


def build_constraint(spec: str | dict[str, Any] | ConstraintConfig) -> Constraint:
    """A constraint from a config mapping (`{name: format, kind: json}`), a bare name, or a validated config."""
    config = spec if isinstance(spec, ConstraintConfig) else CONSTRAINT_KINDS.config_of(spec)
    return CONSTRAINT_KINDS.get(config.name)(config)


@overload
def hinge(value: float, target: float) -> float: ...
@overload
def hinge(value: torch.Tensor, target: float | torch.Tensor) -> torch.Tensor: ...
def hinge(value: float | torch.Tensor, target: float | torch.Tensor) -> float | torch.Tensor:
    """max(0, value − target): zero once the constraint holds, so a satisfied constraint exerts no pull."""
    if isinstance(value, torch.Tensor):
        return torch.clamp(value - target, min=0.0)
    return max(0.0, float(value) - float(target))


def check_contexts(texts: list[str], contexts: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One context per text (empty ones when none are given)."""
    if contexts is None:
        return [{} for _ in texts]
    if len(contexts) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(contexts)} contexts")
    return contexts


def structure_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean −log p(x_t | x_<t) over masked positions t: the likelihood of a compliant reference structure.

    logits (B, T, V); input_ids, mask (B, T), mask True where the token belongs to the structure. Position 0
    has no prediction and is ignored. Same convention as `objectives.sft.token_cross_entropy_sum`, written out
    here so the library does not import the objectives (they will import constraints).
    """
    targets = input_ids[:, 1:].masked_fill(~mask[:, 1:].bool(), -100)  # (B, T-1)
    count = (targets != -100).sum().clamp_min(1)
    total = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
    return total / count
