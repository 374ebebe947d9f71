"""Per-step gradient statistics against values computed by hand."""

import math

import torch

from trainguard.engine.stats import abs_max, global_norm, update_norm


def test_abs_max_takes_the_largest_magnitude_of_either_sign():
    assert abs_max([torch.tensor([1.0, -3.0]), torch.tensor([[2.0, 0.5]])]).item() == 3.0
    assert abs_max([torch.tensor([-5.0, 2.0]), torch.tensor([4.0])]).item() == 5.0
    assert abs_max([]).item() == 0.0


def test_abs_max_propagates_nan_and_inf():
    assert math.isnan(abs_max([torch.tensor([1.0]), torch.tensor([float("nan"), 2.0])]).item())
    assert abs_max([torch.tensor([1.0]), torch.tensor([-float("inf")])]).item() == math.inf


def test_global_and_update_norms():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([[4.0]])
    assert global_norm([a, b]).item() == 5.0
    before = [torch.tensor([1.0, 0.0]), torch.tensor([[4.0]])]
    assert update_norm([a, b], before).item() == 2.0  # |(3,0,4) - (1,0,4)|
