"""A toy objective, a toy source and a toy step plug-in for the engine's seams, loaded through `imports: [toys.py]`.

`toy_inner`: cross-entropy plus a head that regresses the completion length from the mean hidden state,
weighted by `beta` (state, updated after each applied step); one engine step = `inner_updates` updates over
row chunks of the batch. `toy_policy`: the record stream, with each row's first completion token replaced
by a token sampled from the live policy (so the data depends on the policy and the global RNG).
"""

import itertools
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.batches import TokenBatch
from trainguard.data.sources import SOURCES, RecordSource, SourceConfig, generating
from trainguard.engine.optim import ParamGroupSection
from trainguard.models.heads import ScalarHead
from trainguard.objectives import (
    OBJECTIVES,
    STEP_PLUGINS,
    LossOutput,
    Objective,
    ObjectiveConfig,
    ObjectiveContext,
    StepPlugin,
    StepPluginConfig,
)
from trainguard.objectives.sft import token_cross_entropy_sum


class ToyConfig(ObjectiveConfig):
    name: Literal["toy_inner"] = "toy_inner"
    inner_updates: int = Field(4, ge=1, description="Row chunks, each its own optimizer step.")
    head_lr_mult: float = Field(10.0, gt=0, description="Head LR multiple.")
    stop_above: float | None = Field(None, description="Skip the remaining inner updates once toy/head_err > this.")
    poison: tuple[int, int] | None = Field(None, description="(step, update): make that update's loss NaN, once.")


def rows(batch: TokenBatch, start: int, stop: int) -> TokenBatch:
    return TokenBatch(batch.input_ids[start:stop], batch.token_mask[start:stop], batch.completion_mask[start:stop])


@OBJECTIVES.register("toy_inner")
class ToyInner(Objective):
    Config = ToyConfig
    config: ToyConfig

    def __init__(self, config: ToyConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        self.head = ScalarHead(ctx.model_config.hidden_size)
        self.beta = 0.5
        self.steps, self.calls, self.poisoned = 0, 0, False  # this process's count, for `poison` only
        if config.stop_above is not None:
            self.early_stop_key = "toy/head_err"  # type: ignore[misc]

    def stop_early(self, value: float) -> bool:
        return self.config.stop_above is not None and value > self.config.stop_above

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"head": self.head}

    def param_group_defaults(self) -> dict[str, ParamGroupSection]:
        return {"head": ParamGroupSection(lr_mult=self.config.head_lr_mult)}

    def weight(self, batch: TokenBatch) -> int:
        return int(batch.completion_mask[:, 1:].sum())

    def plan(self, batches: list[TokenBatch]) -> list[list[TokenBatch]]:
        (batch,) = batches
        n, k = batch.input_ids.shape[0], self.config.inner_updates
        self.steps, self.calls = self.steps + 1, 0
        bounds = [round(i * n / k) for i in range(k + 1)]
        return [[rows(batch, a, b)] for a, b in itertools.pairwise(bounds)]

    def loss(self, model: nn.Module, batch: TokenBatch) -> LossOutput:
        out = model(input_ids=batch.input_ids, output_hidden_states=True)
        ce = token_cross_entropy_sum(out.logits, batch.input_ids, batch.completion_mask)
        predicted = self.head(out.hidden_states[-1].mean(dim=1).float())  # (B,)
        squared = (predicted - batch.completion_mask.sum(dim=1).float()) ** 2
        if (self.steps, self.calls) == self.config.poison and not self.poisoned:
            self.poisoned, ce = True, ce * float("nan")
        self.calls += 1
        return LossOutput({"task": ce, "head": self.beta * squared.sum()}, {"toy/head_err": squared.mean().detach()})

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        self.beta = 0.9 * self.beta + 0.01 * min(metrics["toy/head_err"], 10.0)
        return {"toy/beta": self.beta}

    def state_dict(self) -> dict[str, Any]:
        return {"beta": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.beta = float(state["beta"])


class ToyPolicyConfig(SourceConfig):
    name: Literal["toy_policy"] = "toy_policy"


@SOURCES.register("toy_policy")
class ToyPolicySource(RecordSource):
    Config = ToyPolicyConfig  # type: ignore[assignment]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0
        self.modes: list[tuple[bool, bool]] = []  # (training during the call, training after it)

    def next_batch(self, policy: nn.Module | None = None) -> TokenBatch:
        assert policy is not None, "the engine hands the live policy to the source"
        batch = super().next_batch()
        first = batch.completion_mask.float().argmax(dim=1)  # (B,) first completion position
        with generating(policy):
            during = policy.training
            logits = policy(input_ids=batch.input_ids).logits[torch.arange(len(first)), first - 1]  # (B, V)
            sampled = torch.multinomial(torch.softmax(logits.float(), dim=-1), 1).squeeze(1)
        self.modes.append((during, policy.training))
        ids = batch.input_ids.clone()
        ids[torch.arange(len(first)), first] = sampled
        self.calls += 1
        return TokenBatch(ids, batch.token_mask, batch.completion_mask)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.calls = int(state["calls"])


class PenaltyConfig(StepPluginConfig):
    name: Literal["toy_penalty"] = "toy_penalty"
    lam: float = Field(0.1, description="Starting multiplier.")


@STEP_PLUGINS.register("toy_penalty")
class Penalty(StepPlugin):
    """A constraint-like plug-in: adds lam * (task loss) as its own term and moves lam after each step."""

    Config = PenaltyConfig
    config: PenaltyConfig

    def __init__(self, config: PenaltyConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        self.lam = config.lam

    def terms(self, batch: Any, out: LossOutput) -> dict[str, torch.Tensor]:
        return {"penalty": self.lam * out.terms["task"]}

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        self.lam += 0.01 * metrics["loss/task"]
        return {"penalty/lambda": self.lam}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = state["lam"]
