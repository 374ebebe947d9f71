"""Reuse and sparsity: −entropy of the program/skill selection distribution (so "entropy ≥ h" is the hinge on
h − H, i.e. on −H with target −h), and the L1 norm of new (adapter) parameters."""

import math
from collections.abc import Iterable
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.constraints.library.base import CONSTRAINT_KINDS, Constraint, ConstraintConfig, check_contexts


def selection_entropy(probs: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B,) entropy in nats of each row of (B, K) selection probabilities; 0·log 0 counts as 0."""
    return -(probs * probs.clamp_min(eps).log()).sum(-1)


class ReuseConfig(ConstraintConfig):
    name: Literal["reuse"] = Field("reuse", description="Constraint kind: entropy of skill selection.")
    probs_key: str = Field("probs", description="The context key holding each sample's selection probabilities.")


@CONSTRAINT_KINDS.register("reuse")
class ReuseConstraint(Constraint):
    """Violation per sample = 1 − H(p)/log K (0 when selection is uniform, 1 when it collapses onto one skill);
    surrogate = mean −H(p) in nats. For "entropy ≥ h" set target = −h."""

    Config = ReuseConfig
    config: ReuseConfig

    def violation(self, texts: list[str], contexts: list[dict[str, Any]] | None = None) -> list[float]:
        out = []
        for i, context in enumerate(check_contexts(texts, contexts)):
            if self.config.probs_key not in context:
                raise ValueError(f"reuse: context {i} has no {self.config.probs_key!r}")
            probs = torch.as_tensor(context[self.config.probs_key], dtype=torch.float64)
            size = probs.numel()
            entropy = float(selection_entropy(probs.flatten()[None])[0])
            out.append(0.0 if size <= 1 else min(1.0, max(0.0, 1.0 - entropy / math.log(size))))
        return out

    def surrogate(self, probs: torch.Tensor) -> torch.Tensor:
        """Mean −H over a (B, K) batch of selection probabilities (differentiable)."""
        return -selection_entropy(probs).mean()


def adapter_parameters(module: nn.Module, match: list[str]) -> list[tuple[str, nn.Parameter]]:
    """Trainable parameters whose names contain any of `match` (peft names LoRA weights `lora_A`, `lora_B`)."""
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad and any(m in n for m in match)]


def param_l1(params: nn.Module | Iterable[torch.Tensor], match: list[str] | None = None) -> torch.Tensor:
    """Σ |p| over a module's matching parameters (default: LoRA's) or over the given tensors; differentiable,
    0 when there are none."""
    if isinstance(params, nn.Module):
        params = [p for _, p in adapter_parameters(params, match or ["lora_"])]
    terms = [p.abs().sum() for p in params]
    return torch.stack(terms).sum() if terms else torch.zeros(())


class ParamL1Config(ConstraintConfig):
    name: Literal["param_l1"] = Field("param_l1", description="Constraint kind: L1 of adapter parameters.")
    match: list[str] = Field(
        default_factory=lambda: ["lora_"],
        min_length=1,
        description="Parameters whose names contain any of these strings are summed (LoRA's by default).",
    )


@CONSTRAINT_KINDS.register("param_l1")
class ParamL1Constraint(Constraint):
    """L1 norm of new (adapter) parameters, read from the module, not from samples."""

    Config = ParamL1Config
    config: ParamL1Config

    def module_value(self, module: nn.Module) -> float:
        """The measured value (no gradient)."""
        with torch.no_grad():
            return float(param_l1(module, self.config.match))

    def surrogate(self, module: nn.Module) -> torch.Tensor:
        return param_l1(module, self.config.match)
