"""RL detectors: read the rollout and policy scalars that GRPO and PPO stages log each step. Their keys are
fixed (no `metric` field), and each detector returns [] on a step without them, so the same guard config
runs unchanged through SFT stages, where none of these keys exist."""

import math
from collections import deque
from typing import Any

from pydantic import Field, model_validator

from trainguard.guard.alerts import Alert
from trainguard.guard.detectors import DETECTORS, Detector, DetectorConfig

REWARD = "rollout/reward_mean"  # the optimised reward (the weighted sum of the reward functions)
VERIFIER = "rollout/verifier_mean"  # the task verifier's audit score, logged only when it is not optimised
LENGTH_CORR = "rollout/length_reward_corr"  # Pearson r of rollout reward vs response length within the step
ZERO_STD = "rollout/frac_reward_zero_std"  # share of prompt groups whose rewards are all equal
FAILURE_RATE = "rollout/reward_failure_rate"  # share of samples whose reward raised or was NaN
ENTROPY = "rl/entropy"  # mean token entropy of the sampled responses
KL = "rl/kl"  # per-token KL to the frozen reference (only with a reference)
APPROX_KL = "rl/approx_kl"  # how far the policy moved within the step
UNSAFE_REWARDED = "rollout/unsafe_rewarded"  # share of the most rewarded samples the safety scorer rejects
SUCCESS = "rollout/success_rate"  # share of rollouts the verifier (or the environment) counts as solved


def solved(metrics: dict[str, float], share: float) -> bool:
    """Whether the step's rollouts are (almost) all solved: then low entropy and no spread are convergence."""
    rate = read(metrics, SUCCESS)
    return rate is not None and rate >= share


def read(metrics: dict[str, float], key: str) -> float | None:
    """The metric when present and finite; a non-finite one is the non-finite detector's (or no signal)."""
    value = metrics.get(key)
    return float(value) if value is not None and math.isfinite(value) else None


def half_change(values: list[float]) -> float:
    """Mean of the recent half minus mean of the older half (the middle value of an odd window is left out)."""
    half = len(values) // 2
    return sum(values[-half:]) / half - sum(values[:half]) / half


class RewardHackingConfig(DetectorConfig):
    window: int = Field(20, ge=4, description="Recent steps compared: their older half against their recent half.")
    min_steps: int = Field(
        8, ge=4, description="Armed once this many steps are in the window (a hack can take hold in a few steps)."
    )
    min_rise: float = Field(
        0.05,
        ge=0,
        description="The optimised reward's recent-half mean above its older-half mean by more than this has risen.",
    )
    min_fall: float = Field(
        0.05,
        ge=0,
        description="The verifier's recent-half mean below its older-half mean by more than this has fallen.",
    )
    max_length_corr: float = Field(
        0.8,
        gt=-1,
        le=1,
        description="Reward-length correlation above this, for `patience` steps while the reward rises, means the "
        "reward pays for length (Singhal et al. 2023, 'A Long Way to Go: Investigating Length Correlations in RLHF').",
    )
    patience: int = Field(5, ge=1, description="Consecutive steps the correlation must stay above `max_length_corr`.")


@DETECTORS.register("reward_hacking")
class RewardHackingDetector(Detector):
    """Reward up while the verifier falls (critical), or up with reward tracking length (warning).

    Either way the policy exploits the reward instead of solving the task (the proxy-up, gold-down pattern
    of Gao et al. 2022, 'Scaling Laws for Reward Model Overoptimization'). The window is cleared after an
    alert, so one trend alerts once, not every step."""

    name = "reward_hacking"
    Config = RewardHackingConfig
    config: RewardHackingConfig

    def __init__(self, config: RewardHackingConfig) -> None:
        super().__init__(config)
        self.window: deque[tuple[float, float | None]] = deque(maxlen=config.window)  # (reward, verifier)
        self.corr_over = 0

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        reward = read(metrics, REWARD)
        if reward is None:
            return []
        self.window.append((reward, read(metrics, VERIFIER)))
        corr = read(metrics, LENGTH_CORR)
        self.corr_over = self.corr_over + 1 if corr is not None and corr > c.max_length_corr else 0
        if len(self.window) < min(c.min_steps, c.window):
            return []
        rise = half_change([r for r, _ in self.window])
        if rise <= c.min_rise:
            return []
        verifier = [v for _, v in self.window if v is not None]
        if len(verifier) == len(self.window) and (fall := -half_change(verifier)) > c.min_fall:
            self.clear()
            why = "roll back: the optimised reward rises while the verifier falls (reward hacking)"
            return [Alert("reward_hacking", "critical", step, fall, c.min_fall, why, {"reward_rise": rise})]
        if self.corr_over >= c.patience:
            assert corr is not None
            self.clear()
            why = "the reward pays for length: penalise length or check the reward functions"
            return [Alert("reward_hacking", "warning", step, corr, c.max_length_corr, why, {"reward_rise": rise})]
        return []

    def clear(self) -> None:
        self.window.clear()
        self.corr_over = 0

    def state_dict(self) -> dict[str, Any]:
        return {"window": [list(pair) for pair in self.window], "corr_over": self.corr_over}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.window = deque((tuple(pair) for pair in state["window"]), maxlen=self.config.window)  # type: ignore[misc]
        self.corr_over = state["corr_over"]


class EntropyCollapseConfig(DetectorConfig):
    warmup: int = Field(5, ge=1, description="First steps whose mean entropy is the start level.")
    min_fraction: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="Entropy below this share of the start level has collapsed (a policy that learns falls to "
        "~25% of its SFT start on its own).",
    )
    recover_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="After a collapse, entropy back above this share of the start level has recovered (info; "
        "its policy undoes diversify). Above `min_fraction`, so one noisy step does not flap.",
    )
    cooldown: int = Field(
        10,
        ge=1,
        description="Steps before a still-collapsed entropy alerts again (each alert turns diversify one notch "
        "further, up to its caps).",
    )
    progress_window: int = Field(
        20,
        ge=2,
        description="Steps over which a rising reward means learning: entropy falls as a policy gets right, so "
        "low entropy alerts only while the reward's recent half is not above its older half.",
    )
    solved_share: float = Field(
        0.9, gt=0, le=1, description="Rollout success rate at which low entropy is convergence, not collapse."
    )

    @model_validator(mode="after")
    def _recover_above_collapse(self) -> "EntropyCollapseConfig":
        if self.recover_fraction < self.min_fraction:
            raise ValueError("recover_fraction must be at least min_fraction")
        return self


@DETECTORS.register("entropy_collapse")
class EntropyCollapseDetector(Detector):
    """Token entropy below a share of its start level (warning), and its recovery (info).

    A collapsed policy samples the same few answers, so group-relative advantages vanish and exploration
    stops. It warns again every `cooldown` steps while still low, and tells once when entropy recovers, so
    the sampling changes made for it can be undone."""

    name = "entropy_collapse"
    Config = EntropyCollapseConfig
    config: EntropyCollapseConfig

    def __init__(self, config: EntropyCollapseConfig) -> None:
        super().__init__(config)
        self.seen, self.total = 0, 0.0
        self.start: float | None = None
        self.collapsed = False
        self.last_alert: int | None = None
        self.rewards: deque[float] = deque(maxlen=config.progress_window)

    def learning(self) -> bool:
        """The reward's recent half is above its older half (a full window only)."""
        if len(self.rewards) < self.config.progress_window:
            return False
        values, half = list(self.rewards), self.config.progress_window // 2
        return sum(values[half:]) / (len(values) - half) > sum(values[:half]) / half

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        entropy = read(metrics, ENTROPY)
        if entropy is None:
            return []
        if (reward := read(metrics, REWARD)) is not None:
            self.rewards.append(reward)
        if self.start is None:
            self.seen, self.total = self.seen + 1, self.total + entropy
            if self.seen >= c.warmup:
                self.start = self.total / self.seen
            return []
        low, high = c.min_fraction * self.start, c.recover_fraction * self.start
        if entropy < low and not (self.learning() or solved(metrics, c.solved_share)):
            if self.collapsed and self.last_alert is not None and step - self.last_alert < c.cooldown:
                return []
            self.collapsed, self.last_alert = True, step
            why = "the policy's entropy collapsed: sample hotter and penalise duplicate answers"
            return [Alert("entropy_collapse", "warning", step, entropy, low, why, {"start": self.start})]
        if self.collapsed and entropy > high:
            self.collapsed = False
            why = "entropy recovered: sampling back to normal"
            return [Alert("diversity_recovered", "info", step, entropy, high, why, {"detector": self.name})]
        return []

    def state_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "total": self.total,
            "start": self.start,
            "collapsed": self.collapsed,
            "last_alert": self.last_alert,
            "rewards": list(self.rewards),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen, self.total, self.start = state["seen"], state["total"], state["start"]
        self.collapsed, self.last_alert = state["collapsed"], state["last_alert"]
        self.rewards = deque(state.get("rewards", []), maxlen=self.config.progress_window)


class ZeroSpreadConfig(DetectorConfig):
    min_share: float = Field(
        1.0, gt=0, le=1, description="Share of prompt groups with equal rewards that counts as no spread (1: all)."
    )
    patience: int = Field(3, ge=1, description="Consecutive steps without spread before alerting.")
    solved_share: float = Field(
        0.9, gt=0, le=1, description="Rollout success rate at which no spread means solved (no alert)."
    )


@DETECTORS.register("zero_spread")
class ZeroSpreadDetector(Detector):
    """Every prompt group's rewards equal for several steps (warning), and spread's return (info).

    GRPO's group-normalised advantages are then all zero, so the step teaches nothing (all solved, all
    failed, or a collapsed policy). It warns every `patience` such steps and tells once when spread returns."""

    name = "zero_spread"
    Config = ZeroSpreadConfig
    config: ZeroSpreadConfig

    def __init__(self, config: ZeroSpreadConfig) -> None:
        super().__init__(config)
        self.over, self.alerted = 0, False

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        share = read(metrics, ZERO_STD)
        if share is None:
            return []
        if share < c.min_share or solved(metrics, c.solved_share):
            self.over = 0
            if not self.alerted:
                return []
            self.alerted = False
            why = "reward spread is back: sampling back to normal"
            return [Alert("diversity_recovered", "info", step, share, c.min_share, why, {"detector": self.name})]
        self.over += 1
        if self.over < c.patience:
            return []
        self.over, self.alerted = 0, True
        why = "no group has reward spread, so advantages are zero: diversify sampling or change the prompts"
        return [Alert("zero_spread", "warning", step, share, c.min_share, why, {"steps": c.patience})]

    def state_dict(self) -> dict[str, Any]:
        return {"over": self.over, "alerted": self.alerted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.over, self.alerted = state["over"], state["alerted"]


class KlBlowupConfig(DetectorConfig):
    max_kl: float = Field(1.0, gt=0, description="Per-token KL to the reference above this (nats/token) has blown up.")
    max_approx_kl: float = Field(
        1.0,
        gt=0,
        description="Approximate KL of the policy's change within one step above this has blown up (PPO's early "
        "stop targets ~0.01-0.05; 1 is a broken update, not a large one).",
    )


@DETECTORS.register("kl_blowup")
class KlBlowupDetector(Detector):
    """KL to the reference, or the within-step approximate KL, above its bound (critical).

    Past it the update is no longer trusted (the clipped surrogate only bounds a small step): roll back."""

    name = "kl_blowup"
    Config = KlBlowupConfig
    config: KlBlowupConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        c = self.config
        for key, limit in ((KL, c.max_kl), (APPROX_KL, c.max_approx_kl)):
            value = metrics.get(key)
            if value is not None and value > limit:  # inf counts; NaN is the non-finite detector's
                why = "roll back: the policy moved too far (lower the LR or raise the KL coefficient)"
                return [Alert("kl_blowup", "critical", step, float(value), limit, why, {"metric": key})]
        return []


class RewardFailuresConfig(DetectorConfig):
    max_rate: float = Field(
        0.1, ge=0, le=1, description="Share of samples whose reward function raised or returned NaN above this."
    )


@DETECTORS.register("reward_failures")
class RewardFailuresDetector(Detector):
    """Reward functions failing (raising or NaN) on more than a share of samples (warning).

    Failures are scored 0, so the policy trains on a reward that is partly noise; the code needs fixing."""

    name = "reward_failures"
    Config = RewardFailuresConfig
    config: RewardFailuresConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        rate = read(metrics, FAILURE_RATE)
        if rate is None or rate <= self.config.max_rate:
            return []
        why = "reward functions fail on many samples (scored 0): check them"
        return [Alert("reward_failures", "warning", step, rate, self.config.max_rate, why)]


class MisalignmentConfig(DetectorConfig):
    max_share: float = Field(
        0.05, ge=0, le=1, description="Share of the most rewarded rollouts the safety scorer rejects above this."
    )


@DETECTORS.register("objective_misalignment")
class MisalignmentDetector(Detector):
    """The reward pays for what the safety scorer rejects: of the step's most rewarded rollouts (the top fifth), a
    share above max_share is harmful (warning). The policy is learning what it should not; fix the reward."""

    name = "objective_misalignment"
    Config = MisalignmentConfig
    config: MisalignmentConfig

    def observe(self, metrics: dict[str, float], step: int) -> list[Alert]:
        share = read(metrics, UNSAFE_REWARDED)
        if share is None or share <= self.config.max_share:
            return []
        why = "the most rewarded samples are unsafe: the objective pays for harm; fix the reward before training on"
        return [Alert("objective_misalignment", "warning", step, share, self.config.max_share, why)]
