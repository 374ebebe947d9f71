"""Reward functions and shaping: weighted sums, failures scored 0 and counted (never a crash), shaping terms,
the group diversity penalty, and the audit verifier when a proxy is optimised."""

import math

import pytest

from trainguard.errors import ConfigError
from trainguard.rl.rewards import (
    REWARD_FNS,
    LengthConfig,
    RewardContext,
    RewardFn,
    RewardFnConfig,
    RewardModelConfig,
    RewardModelReward,
    Rollout,
    Scorer,
    ShapingSection,
    VerifierConfig,
    group_duplicates,
    pearson,
)
from trainguard.tasks import build_task


class FlakyConfig(RewardFnConfig):
    name: str = "flaky"


@REWARD_FNS.register("flaky")
class Flaky(RewardFn):
    """Raises on 'boom', returns NaN on 'nan', else 0.5: a grader the policy can break."""

    Config = FlakyConfig

    def score_one(self, rollout: Rollout) -> float:
        if rollout.text == "boom":
            raise RuntimeError("grader crashed")
        return math.nan if rollout.text == "nan" else 0.5

    def score(self, rollouts):
        return [self.score_one(r) for r in rollouts]  # raises for the whole batch on one bad sample


@pytest.fixture
def ctx():
    return RewardContext(build_task("reverse", {"min_len": 3, "max_len": 4}), tokenizer=None, max_length=32)


def rollouts_of(ctx, texts, finished=True):
    inst = ctx.task.instance(0)  # reference is the reversed word
    return inst, [Rollout(inst, t, len(t) + 1, finished) for t in texts]


def test_a_weighted_sum_with_failures_scored_zero_and_counted(ctx):
    inst, rollouts = rollouts_of(ctx, ["boom", "nan", "ok", "ok"])
    rollouts[2].text = inst.reference
    scorer = Scorer([VerifierConfig(weight=2.0), FlakyConfig(weight=1.0)], ShapingSection(), ctx)
    rewards, stats = scorer(rollouts, group=4, diversity=0.0)
    assert rewards == [0.0, 0.0, 2.5, 0.5]
    assert stats["rollout/reward_failures"] == 2
    assert stats["rollout/reward_failure_rate"] == pytest.approx(2 / 8)
    assert stats["rollout/reward/verifier"] == pytest.approx(0.25)
    assert stats["rollout/reward/flaky"] == pytest.approx(0.25)
    assert "rollout/verifier_mean" not in stats  # the verifier is paid, so it is no audit


def test_a_proxy_is_audited_by_the_verifier_and_its_length_correlation_reported(ctx):
    inst, rollouts = rollouts_of(ctx, ["a", "bbbbbbbb", "cccccccccccccccc", ""])
    rollouts[3] = Rollout(inst, inst.reference, 5, True)
    scorer = Scorer([LengthConfig(cap=16)], ShapingSection(), ctx)
    rewards, stats = scorer(rollouts, group=4, diversity=0.0)
    assert rewards[:3] == [1 / 16, 0.5, 1.0]
    assert stats["rollout/verifier_mean"] == pytest.approx(0.25)
    assert stats["rollout/length_reward_corr"] > 0.9


def test_shaping_terms(ctx):
    inst, _ = rollouts_of(ctx, [])
    right, cut = Rollout(inst, inst.reference, 4, True), Rollout(inst, "zzzz", 10, False)
    shaping = ShapingSection(completion_bonus=1.0, failure_penalty=0.5, missing_eos_penalty=0.25, length_penalty=0.01)
    rewards, _ = Scorer([VerifierConfig()], shaping, ctx)([right, cut], group=2, diversity=0.0)
    assert rewards == pytest.approx([1.0 + 1.0 - 0.04, -0.5 - 0.25 - 0.10])


def test_the_diversity_penalty_charges_repeats_within_a_group(ctx):
    assert group_duplicates(["a", "a", "b", "c", "x", "x", "x", "x"], 4) == [1 / 3, 1 / 3, 0, 0, 1, 1, 1, 1]
    _, rollouts = rollouts_of(ctx, ["a", "a", "b", "c"])
    rewards, _ = Scorer([VerifierConfig()], ShapingSection(), ctx)(rollouts, group=4, diversity=0.3)
    assert rewards == pytest.approx([-0.1, -0.1, 0.0, 0.0])
    inst = rollouts[0].instance
    right = [Rollout(inst, inst.reference, 3, True) for _ in range(2)] + rollouts[2:]
    rewards, _ = Scorer([VerifierConfig()], ShapingSection(), ctx)(right, group=4, diversity=0.3)
    assert rewards == pytest.approx([1.0, 1.0, 0.0, 0.0])  # agreeing on the right answer is not charged


def test_pearson():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0


def test_a_reward_model_function_without_a_reward_model_names_the_setting(ctx):
    with pytest.raises(ConfigError, match="reward_model"):
        RewardModelReward(RewardModelConfig(), ctx)


def test_the_reward_model_function_scores_as_the_reward_model_does(tmp_path, ctx):
    """An exported reward model, loaded as a stage's companion, scores rollouts exactly as its own
    get_rewards does (the same text, separator and last token)."""
    import torch
    from transformers import LlamaForCausalLM

    from trainguard.engine.companions import load_companion
    from trainguard.models.presets import preset_config
    from trainguard.models.tokenizer import byte_tokenizer
    from trainguard.reward import RewardModel
    from trainguard.reward.export import save_reward_model

    tok = byte_tokenizer()
    torch.manual_seed(0)
    lm = LlamaForCausalLM(preset_config("tiny", len(tok), 256, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id))
    rm = RewardModel(lm, hidden_size=lm.config.hidden_size)
    save_reward_model(rm, tok, tmp_path / "rm")
    companion = load_companion(tmp_path / "rm", torch.device("cpu"))
    fn = RewardModelReward(RewardModelConfig(), RewardContext(ctx.task, tok, 64, {"reward_model": companion}))
    inst, rollouts = rollouts_of(ctx, ["cba", "abc", "a much longer answer", ""])
    got = fn.score(rollouts)
    want = rm.get_rewards([inst.prompt] * 4, [r.text for r in rollouts], tok, max_length=64).tolist()
    assert got == pytest.approx(want, abs=1e-5) and len(set(got)) == 4
