"""The clipped surrogate, value clipping, KL estimators, entropy and aggregation against hand-computed values."""

import math

import pytest
import torch

from trainguard.rl.losses import aggregate, clipped_policy_loss, clipped_value_loss, entropy_from_logits, kl_estimate


def test_clipped_surrogate_by_hand():
    # ratios e^{0.5} ≈ 1.6487 (A = +1: clipped at 1.2) and e^{-0.5} ≈ 0.6065 (A = −1: clipped at 0.8)
    logp = torch.tensor([[0.0, 0.0]])
    old = torch.tensor([[-0.5, 0.5]])
    adv = torch.tensor([[1.0, -1.0]])
    out = clipped_policy_loss(logp, old, adv, torch.ones(1, 2), clip_low=0.2)
    # token 0: max(−1.6487, −1.2) = −1.2 (clipped); token 1: max(0.6065, 0.8) = 0.8 (clipped)
    torch.testing.assert_close(out.per_token, torch.tensor([[-1.2, 0.8]]))
    assert float(out.clip_fraction) == 1.0
    r = torch.tensor([math.exp(0.5), math.exp(-0.5)])
    torch.testing.assert_close(out.approx_kl, ((r - 1) - torch.log(r)).mean())
    torch.testing.assert_close(out.ratio_mean, r.mean())


def test_the_unclipped_side_keeps_its_gradient_and_dapo_clips_high_apart():
    logp = torch.tensor([[0.1]], requires_grad=True)
    out = clipped_policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), 0.2)
    out.per_token.sum().backward()
    torch.testing.assert_close(logp.grad, -torch.exp(torch.tensor([[0.1]])))  # d(−A·e^{logp})/dlogp
    wide = clipped_policy_loss(
        torch.tensor([[0.25]]), torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.28
    )
    torch.testing.assert_close(wide.per_token, torch.tensor([[-1.28]]))  # e^{0.25} = 1.284 > 1.28


def test_value_clipping_takes_the_worse_of_the_two():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.1]])
    loss = clipped_value_loss(values, old, returns, torch.ones(1, 2), clip=0.2)
    # token 0: unclipped (1−2)² = 1, clipped (0.2−2)² = 3.24 -> 3.24; token 1: (0−0.1)² = 0.01 both
    torch.testing.assert_close(loss, torch.tensor(0.5 * (3.24 + 0.01) / 2))
    torch.testing.assert_close(
        clipped_value_loss(values, old, returns, torch.ones(1, 2), None), torch.tensor(0.5 * 1.01 / 2)
    )


def test_kl_estimators():
    logp, ref = torch.tensor([-1.0, -2.0]), torch.tensor([-1.5, -1.0])
    torch.testing.assert_close(kl_estimate(logp, ref, "k1"), torch.tensor([0.5, -1.0]))
    r = torch.exp(ref - logp)  # π_ref/π
    torch.testing.assert_close(kl_estimate(logp, ref, "k3"), (r - 1) - torch.log(r))
    assert (kl_estimate(logp, ref, "k3") >= 0).all() and float(kl_estimate(ref, ref, "k3").abs().max()) == 0


def test_entropy_of_uniform_and_certain_distributions():
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    torch.testing.assert_close(entropy_from_logits(logits), torch.tensor([[math.log(4), 0.0]]), atol=1e-6, rtol=0)


def test_aggregation_per_sequence_and_per_token():
    per_token = torch.tensor([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])
    assert float(aggregate(per_token, mask, "grpo")) == pytest.approx((1.0 + 4.0) / 2)  # each sequence weighs the same
    assert float(aggregate(per_token, mask, "dapo")) == pytest.approx((4.0 + 4.0) / 5)  # each token weighs the same
