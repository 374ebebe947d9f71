"""The Bradley-Terry loss against numbers computed by hand."""

import math

import torch

from trainguard.reward import compute_reward_loss


def test_equal_rewards_give_log_2():
    assert abs(float(compute_reward_loss(torch.zeros(4), torch.zeros(4))) - math.log(2)) < 1e-6


def test_values_match_the_formula():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, -1.0])
    expected = sum(math.log1p(math.exp(-g)) for g in (1.0, -1.0, 3.0)) / 3
    assert abs(float(compute_reward_loss(chosen, rejected)) - expected) < 1e-6


def test_huge_gaps_stay_finite_and_exact():
    loss = compute_reward_loss(torch.tensor([1e4, -1e4]), torch.tensor([-1e4, 1e4]))
    assert torch.isfinite(loss) and abs(float(loss) - 1e4) < 1e-2  # mean of ~0 and 2e4


def test_margin_and_centring():
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])
    assert abs(float(compute_reward_loss(chosen, rejected, margin=1.0)) - math.log(2)) < 1e-6
    centred = compute_reward_loss(chosen, rejected, center_coef=0.5)
    assert abs(float(centred) - (math.log1p(math.exp(-1.0)) + 0.5)) < 1e-6


def test_gradients_push_the_rewards_apart():
    chosen, rejected = torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)
    compute_reward_loss(chosen, rejected).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen, lowers rejected
