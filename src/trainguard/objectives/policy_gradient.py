"""What GRPO and PPO share: rollouts as their source, a reference for the KL, the rollout numbers they log,
the step's time split, and a held-out greedy evaluation by the task's verifier that picks `best/`."""

from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from torch import nn

from trainguard.data import episodes, rollouts  # noqa: F401  (register the RL sources; rollouts is the default)
from trainguard.data.rollouts import RolloutBatch
from trainguard.errors import ConfigError
from trainguard.objectives.base import Objective, ObjectiveConfig, ObjectiveContext
from trainguard.rl.forward import heldout_metrics


class PolicyGradientObjective(Objective):
    default_source = "rollouts"
    best_metric = "eval/reward_mean"
    best_mode = "max"
    loss_tracks_progress = False
    generates = True
    kl_field: ClassVar[str] = "kl_coef"  # the config key of the KL coefficient, for the error message

    def __init__(self, config: ObjectiveConfig, ctx: ObjectiveContext, kl_coef: float) -> None:
        super().__init__(config, ctx)
        self.reference = ctx.companions.get("reference")
        if kl_coef > 0 and self.reference is None:
            raise ConfigError(
                f"objective.{self.kl_field}: {kl_coef} needs a reference policy: set the stage's "
                "`reference: copy` (a frozen copy) or `reference: adapter` (LoRA off)"
            )

    def rollout_metrics(self, batch: RolloutBatch) -> dict[str, torch.Tensor]:
        rewards = batch.rewards.float()
        out = {
            "rollout/reward_mean": rewards.mean(),
            "rollout/reward_std": rewards.std() if rewards.numel() > 1 else rewards.new_zeros(()),
        }
        return out | {k: torch.tensor(float(v)) for k, v in batch.stats.items()}

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        """The step's time split: generate and score (measured by the source), train (the rest)."""
        if "perf/step_time_s" not in metrics:
            return {}
        rest = metrics["perf/step_time_s"] - metrics.get("time/generate_s", 0.0) - metrics.get("time/score_s", 0.0)
        return {"time/train_s": max(rest, 0.0)}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: list[Any], accelerator: Accelerator) -> dict[str, float]:
        return heldout_metrics(accelerator.unwrap_model(model, keep_torch_compile=False), self.ctx.tokenizer, batches)
