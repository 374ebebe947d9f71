"""A user's own objective, registered from this file (`imports: [custom_objective.py]` in the run file).

`length_sft`: completion-only cross-entropy (reused from the built-in SFT objective) plus an auxiliary head
that predicts, from the prompt's last hidden state, how many tokens the completion will have. It shows the
three things an objective can own besides its loss:
- a trainable head (`length_head`): built from the model's hidden size, trained at its own LR multiplier,
  checkpointed, rolled back and exported to `final/heads/length_head/` with the model;
- a piece of state (`scale`, a running mean of the head's squared error) that divides the auxiliary term,
  updated after each applied step and saved with the checkpoint, so resume is exact;
- extra metrics (`aux/length_mae`), logged and averaged like the built-in ones.
"""

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from trainguard.data.batches import TokenBatch
from trainguard.engine.optim import ParamGroupSection
from trainguard.models.heads import ScalarHead
from trainguard.objectives import OBJECTIVES, LossOutput, ObjectiveContext
from trainguard.objectives.sft import SFTConfig, SFTObjective, target_mask, token_cross_entropy_sum


class LengthSFTConfig(SFTConfig):
    name: Literal["length_sft"] = "length_sft"  # type: ignore[assignment]
    aux_coef: float = Field(0.1, ge=0, description="Weight of the length-prediction term.")
    head_lr_mult: float = Field(10.0, gt=0, description="The head's LR as a multiple of the model's.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Smoothing of the running squared error (the state).")


@OBJECTIVES.register("length_sft")
class LengthSFT(SFTObjective):
    Config = LengthSFTConfig
    config: LengthSFTConfig

    def __init__(self, config: LengthSFTConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        self.length_head = ScalarHead(ctx.model_config.hidden_size)  # the context knows the hidden size
        self.scale = 1.0  # running mean of the squared length error: the objective's state

    def trainable_modules(self) -> dict[str, nn.Module]:
        return {"length_head": self.length_head}

    def param_group_defaults(self) -> dict[str, ParamGroupSection]:
        return {"length_head": ParamGroupSection(lr_mult=self.config.head_lr_mult, weight_decay=0.0)}

    def loss(self, model: nn.Module, batch: TokenBatch) -> LossOutput:
        out = model(input_ids=batch.input_ids, output_hidden_states=True)
        ce = token_cross_entropy_sum(out.logits, batch.input_ids, target_mask(batch, self.config.loss_on))
        hidden = out.hidden_states[-1]  # (B, T, H)
        prompt_end = (batch.token_mask & ~batch.completion_mask).sum(dim=1) - 1  # (B,) last prompt position
        predicted = self.length_head(hidden[torch.arange(hidden.shape[0]), prompt_end].float())  # (B,)
        target = batch.completion_mask.sum(dim=1).float()  # (B,) completion tokens
        squared = (predicted - target) ** 2
        aux = self.config.aux_coef * squared.sum() / self.scale
        metrics = {"aux/length_mae": (predicted - target).abs().mean().detach(), "aux/sq_err": squared.mean().detach()}
        return LossOutput({"task": ce, "length": aux}, metrics)

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        m = self.config.momentum
        self.scale = m * self.scale + (1 - m) * max(metrics["aux/sq_err"], 1e-3)
        return {"aux/scale": self.scale}

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
