"""Activation statistics: firing rates from hooks that exist only on sampled steps."""

import torch

from trainguard.config import ModelSection
from trainguard.guard.activations import ActivationConfig, ActivationMonitor
from trainguard.guard.faults import FaultInjector, FaultSpec
from trainguard.models.loading import build_model
from trainguard.models.tokenizer import byte_tokenizer


def sample(monitor: ActivationMonitor, model, step: int):
    monitor.attach(model)
    with torch.no_grad():
        model(input_ids=torch.randint(0, 256, (4, 16), generator=torch.Generator().manual_seed(step)))
    return monitor.collect(step)


def test_healthy_swiglu_fires_about_half_and_is_quiet():
    tok = byte_tokenizer()
    model = build_model(ModelSection(preset="tiny"), tok, 32, seed=0)
    monitor = ActivationMonitor(ActivationConfig(every=10))
    assert monitor.due(10) and not monitor.due(11)
    metrics, alerts = sample(monitor, model, 10)
    assert alerts == [] and 0.4 < metrics["act/L0.mlp.act_fn/firing"] < 0.6
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed after the sample


def test_dead_units_are_flagged_absolute_and_relative():
    tok = byte_tokenizer()
    model = build_model(ModelSection(preset="tiny"), tok, 32, seed=0)
    monitor = ActivationMonitor(ActivationConfig())
    sample(monitor, model, 10)  # baseline ~0.5
    FaultInjector([FaultSpec(kind="dead_units", at_step=1, magnitude=0.6)], 259, None, 256).model(model, 1)
    _, alerts = sample(monitor, model, 20)
    assert len(alerts) == 4 and all(a.kind == "activations" and "stopped firing" in a.recommendation for a in alerts)
    FaultInjector([FaultSpec(kind="dead_units", at_step=1, magnitude=1.0)], 259, None, 256).model(model, 1)
    _, alerts = sample(monitor, model, 30)
    assert len(alerts) == 4 and all(a.value == 0.0 and a.threshold == 0.01 for a in alerts)
