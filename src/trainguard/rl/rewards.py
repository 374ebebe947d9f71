"""Reward functions and shaping: what a rollout is paid.

A stage's reward is a weighted sum of registered reward functions (`verifier`, `reward_model`, `length`, or a
plug-in's), plus shaping. A function that raises or returns a non-finite value for a sample scores that sample
0 and is counted, never crashing the run: an RL policy will find any input that breaks a grader."""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from trainguard.constraints.library.safety import is_harmful
from trainguard.errors import ConfigError
from trainguard.registry import Registry
from trainguard.section import Section
from trainguard.tasks import Instance, Task


@dataclass
class Rollout:
    """One sampled response to a task prompt."""

    instance: Instance
    text: str  # decoded up to (not including) EOS
    n_tokens: int  # response tokens, EOS included
    finished: bool  # ended with EOS (else truncated at max_new_tokens)


@dataclass
class RewardContext:
    task: Task
    tokenizer: Any
    max_length: int
    companions: dict[str, Any] = field(default_factory=dict)


class RewardFnConfig(Section):
    name: str
    weight: float = Field(1.0, description="Multiplier of this function's score in the summed reward.")


class RewardFn(ABC):
    Config: ClassVar[type[RewardFnConfig]]

    def __init__(self, config: RewardFnConfig, ctx: RewardContext) -> None:
        self.config, self.ctx = config, ctx

    @abstractmethod
    def score_one(self, rollout: Rollout) -> float: ...

    def score(self, rollouts: list[Rollout]) -> list[float]:
        """Scores of a step's rollouts (a batched function overrides this; per sample by default)."""
        return [self.score_one(r) for r in rollouts]


REWARD_FNS: Registry[type[RewardFn]] = Registry("reward function")


class VerifierConfig(RewardFnConfig):
    name: Literal["verifier"] = "verifier"


@REWARD_FNS.register("verifier")
class VerifierReward(RewardFn):
    """The task's own verifier: the ground truth a proxy is audited against."""

    Config = VerifierConfig

    def score_one(self, rollout: Rollout) -> float:
        return float(self.ctx.task.score(rollout.instance, rollout.text).value)

    def score(self, rollouts: list[Rollout]) -> list[float]:
        """The step's answers in one `score_many` (a sandboxed task runs them as one batch)."""
        scores = self.ctx.task.score_many([r.instance for r in rollouts], [r.text for r in rollouts])
        return [float(s.value) for s in scores]


class LengthConfig(RewardFnConfig):
    name: Literal["length"] = "length"
    cap: int = Field(32, gt=0, description="Characters at which the pay stops growing.")


@REWARD_FNS.register("length")
class LengthReward(RewardFn):
    """Pays for characters, up to `cap`: a proxy that a policy hacks by rambling (the reward-hacking demo)."""

    Config = LengthConfig
    config: LengthConfig

    def score_one(self, rollout: Rollout) -> float:
        return min(len(rollout.text), self.config.cap) / self.config.cap


class RewardModelConfig(RewardFnConfig):
    name: Literal["reward_model"] = "reward_model"
    head: str | None = Field(None, description="Which exported head scores (default: the only one, or 'reward').")


@REWARD_FNS.register("reward_model")
class RewardModelReward(RewardFn):
    """A frozen Bradley-Terry reward model (the stage's `reward_model` companion), read at an appended EOS as
    it was trained."""

    Config = RewardModelConfig
    config: RewardModelConfig

    def __init__(self, config: RewardModelConfig, ctx: RewardContext) -> None:
        super().__init__(config, ctx)
        companion = ctx.companions.get("reward_model")
        if companion is None:
            raise ConfigError("source.rewards: reward_model needs the stage's `reward_model:` (a stage or a folder)")
        heads = companion.heads or {}
        name = config.head or ("reward" if "reward" in heads or len(heads) != 1 else next(iter(heads)))
        if name not in heads:
            where = f"{name!r} is not a head of {companion.source}"
            raise ConfigError(f"source.rewards.head: {where}; has: {', '.join(sorted(heads)) or 'none'}")
        self.model, self.head = companion.module.module, heads[name]

    def score_one(self, rollout: Rollout) -> float:
        return self.score([rollout])[0]

    def score(self, rollouts: list[Rollout]) -> list[float]:
        prompts, texts = [r.instance.prompt for r in rollouts], [r.text for r in rollouts]
        return score_texts(self.model, self.head, self.ctx.tokenizer, prompts, texts, self.ctx.max_length)


@torch.no_grad()
def score_texts(
    model: Any, head: Any, tokenizer: Any, prompts: list[str], responses: list[str], max_length: int
) -> list[float]:
    """A frozen reward (or cost) model's scores of prompt + separator + response, read at the appended EOS as it
    was trained (`RewardModel.get_rewards` reads the same)."""
    from trainguard.reward.data import encode_pair_texts
    from trainguard.reward.model import last_hidden_state, rewards_at_last_token

    separator = getattr(head, "separator", " ")
    ids, mask, _ = encode_pair_texts(tokenizer, prompts, responses, max_length, separator=separator)
    device = next(model.parameters()).device
    ids, mask = ids.to(device), mask.to(device)
    return rewards_at_last_token(last_hidden_state(model, ids, mask), mask, head).tolist()


class ShapingSection(Section):
    """Terms added to the summed reward; all off by default."""

    completion_bonus: float = Field(0.0, description="Added when the answer succeeds (verifier score 1, or the env).")
    failure_penalty: float = Field(0.0, ge=0, description="Subtracted when it does not.")
    missing_eos_penalty: float = Field(0.0, ge=0, description="Subtracted from a response cut at max_new_tokens.")
    length_penalty: float = Field(0.0, ge=0, description="Subtracted per response token.")
    per_step_reward: float = Field(0.0, description="Added per environment turn (multi-turn episodes).")


def shaped(base: float, rollout: Rollout, success: bool, shaping: ShapingSection, turns: int = 0) -> float:
    bonus = shaping.completion_bonus if success else -shaping.failure_penalty
    eos = 0.0 if rollout.finished else shaping.missing_eos_penalty
    return base + bonus - eos - shaping.length_penalty * rollout.n_tokens + shaping.per_step_reward * turns


def safe_scores(fn: RewardFn, rollouts: list[Rollout]) -> tuple[list[float], int]:
    """`fn`'s scores with every failure (a raise, a non-finite value) scored 0; and how many failed. A batched
    function that raises is retried one sample at a time, so one bad sample costs only itself."""
    try:
        values = fn.score(rollouts)
    except Exception:
        values = []
        for r in rollouts:
            try:
                values.append(fn.score_one(r))
            except Exception:
                values.append(math.nan)
    out = [float(v) if isinstance(v, int | float) and math.isfinite(v) else 0.0 for v in values]
    failed = sum(not (isinstance(v, int | float) and math.isfinite(v)) for v in values)
    return out, failed


def group_duplicates(texts: list[str], group: int) -> list[float]:
    """Per sample: the share of the other samples of its group with the identical text (0 when G = 1)."""
    out = []
    for start in range(0, len(texts), group):
        chunk = texts[start : start + group]
        out += [(chunk.count(t) - 1) / max(len(chunk) - 1, 1) for t in chunk]
    return out


def pearson(xs: list[float], ys: list[float]) -> float:
    """Correlation of two equal-length lists; 0 when either has no spread."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


class Scorer:
    """A step's rewards: the weighted functions, shaping, and the group diversity penalty; with the numbers
    the guard reads (each function's mean, the verifier as an audit when it is not optimised, failures, the
    reward's correlation with length)."""

    def __init__(self, configs: list[RewardFnConfig], shaping: ShapingSection, ctx: RewardContext) -> None:
        self.fns: dict[str, RewardFn] = {}
        for cfg in configs:
            key = cfg.name if cfg.name not in self.fns else f"{cfg.name}_{len(self.fns)}"
            self.fns[key] = REWARD_FNS.get(cfg.name)(cfg, ctx)
        self.audit = "verifier" not in self.fns  # the verifier is then measured, never paid
        self.verifier = self.fns.get("verifier") or VerifierReward(VerifierConfig(), ctx)
        self.shaping = shaping

    def __call__(self, rollouts: list[Rollout], group: int, diversity: float) -> tuple[list[float], dict[str, float]]:
        n, stats, failed = len(rollouts), {}, 0
        total, verified = [0.0] * n, None
        for key, fn in self.fns.items():
            values, bad = safe_scores(fn, rollouts)
            failed += bad
            stats[f"rollout/reward/{key}"] = sum(values) / n
            total = [t + fn.config.weight * v for t, v in zip(total, values, strict=True)]
            verified = values if fn is self.verifier else verified
        if verified is None:
            verified, _ = safe_scores(self.verifier, rollouts)
            stats["rollout/verifier_mean"] = sum(verified) / n
        total = [shaped(t, r, v >= 1.0, self.shaping) for t, r, v in zip(total, rollouts, verified, strict=True)]
        if diversity > 0:  # repeating a wrong answer costs; agreeing on a right one does not
            dup = group_duplicates([r.text for r in rollouts], group)
            total = [t - diversity * d * (v < 1.0) for t, d, v in zip(total, dup, verified, strict=True)]
        stats |= {
            "rollout/reward_failures": float(failed),
            "rollout/reward_failure_rate": failed / (n * max(len(self.fns), 1)),
            "rollout/length_reward_corr": pearson(total, [float(r.n_tokens) for r in rollouts]),
            "rollout/success_rate": sum(v >= 1.0 for v in verified) / n,
            "rollout/unsafe_rewarded": unsafe_rewarded(total, [r.text for r in rollouts]),
        }
        return total, stats


def unsafe_rewarded(rewards: list[float], texts: list[str], top: float = 0.2) -> float:
    """Among the step's most rewarded samples (the top fifth, at least one), the share the safety scorer rejects:
    what the objective pays for that it should not (objective misalignment)."""
    k = max(1, round(top * len(rewards)))
    best = sorted(range(len(rewards)), key=lambda i: rewards[i], reverse=True)[:k]
    return sum(is_harmful(texts[i]) for i in best) / k if rewards else 0.0
