"""GAE, whitening, group advantages and explained variance against numbers worked out by hand."""

import math

import pytest
import torch

from trainguard.rl.advantages import explained_variance, gae, group_advantages, whiten


def test_gae_matches_the_recursion_worked_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # δ2 = 1 − 0.5 = 0.5; δ1 = 0.9·0.5 − 0.5 = −0.05; δ0 = −0.05
    # A2 = 0.5; A1 = −0.05 + 0.72·0.5 = 0.31; A0 = −0.05 + 0.72·0.31 = 0.1732
    torch.testing.assert_close(adv, torch.tensor([[0.1732, 0.31, 0.5]]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[1.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, torch.tensor([[6.0, 5.0, 3.0]]))
    torch.testing.assert_close(adv, torch.tensor([[5.0, 4.0, 2.0]]))


def test_padding_ends_the_episode_and_stays_zero():
    rewards = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    values = torch.tensor([[0.2, 0.4, 9.0, 9.0], [0.1, 0.1, 0.1, 0.1]])  # 9.0 on padding must not leak in
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv[0], torch.tensor([0.8, 0.6, 0.0, 0.0]))  # R = 1 from both tokens
    torch.testing.assert_close(ret[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    torch.testing.assert_close(ret[1], torch.tensor([2.0, 2.0, 2.0, 2.0]))


def test_whitening_gives_zero_mean_unit_variance_over_the_mask():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    assert out[0, 3] == 0
    torch.testing.assert_close(out[0, :3], torch.tensor([-1.0, 0.0, 1.0]) * math.sqrt(1.5), atol=1e-4, rtol=0)


def test_group_advantages_by_hand_and_zero_spread_groups():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5])  # three groups of two
    adv, zero = group_advantages(rewards, group_size=2)
    s = math.sqrt(0.5)  # unbiased std of {1, 0}
    torch.testing.assert_close(adv, torch.tensor([0.5 / s, -0.5 / s, -0.5 / s, 0.5 / s, 0.0, 0.0]), atol=1e-3, rtol=0)
    assert zero.tolist() == [False, False, True]
    centred, _ = group_advantages(rewards, group_size=2, scale=False)
    torch.testing.assert_close(centred, torch.tensor([0.5, -0.5, -0.5, 0.5, 0.0, 0.0]))
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(rewards, group_size=4)


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    assert explained_variance(returns, returns, mask) == 1.0
    assert explained_variance(torch.full((1, 4), 2.5), returns, mask) == 0.0
