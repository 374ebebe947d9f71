"""The bdh spiking preset: LIF dynamics against hand-computed values, the surrogate gradient, the model as a Llama
(save/load, generate, LoRA), its config section, the `spiking` plug-in's terms and Hebbian rule, and the detectors."""

import copy
import math
import warnings

import pytest
import torch
from pydantic import ValidationError
from transformers import AutoModelForCausalLM

from helpers import tiny_config, write_config
from trainguard.config import load_config
from trainguard.errors import ConfigError
from trainguard.guard.detectors import DETECTORS
from trainguard.guard.guard import GuardSection
from trainguard.guard.spikes import MembraneConfig, MembraneDetector, SpikeRateConfig, SpikeRateDetector
from trainguard.models.bdh import BdhConfig, BdhForCausalLM, SpikeFn, SpikingMLP, is_bdh, lif_trace
from trainguard.models.config import PRESET_LR, LoraSection, ModelSection, SpikingSection
from trainguard.models.loading import add_lora, build_model, export_model
from trainguard.models.spiking import (
    SpikingConfig,
    SpikingPlugin,
    implied_plugins,
    masked_mean_std,
    stdp_sums,
)
from trainguard.models.tokenizer import byte_tokenizer
from trainguard.objectives import STEP_PLUGINS, LossOutput, ObjectiveContext


def tiny_bdh(**neurons) -> BdhForCausalLM:
    cfg = BdhConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=16,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        **neurons,
    )
    torch.manual_seed(0)
    return BdhForCausalLM(cfg)


# -- LIF dynamics ------------------------------------------------------------------------------------------------


def test_lif_with_a_constant_input_spikes_at_the_hand_computed_steps():
    # i <- 0.8 i + x; v <- 0.9 v + i; spike when v >= 1, then v -= 1 (tau_syn 5, tau_mem 10, threshold 1)
    # x = 0.1: v = 0.1, 0.27, 0.487, 0.7335 (no spike)
    # x = 0.2: v = 0.2, 0.54, 0.974, 1.467 -> spike at step 4 only, v = 0.467
    # x = 0.5: v = 0.5, 1.35 -> spike (0.35), 1.535 -> spike (0.535), 1.9575 -> spike (0.9575): steps 2, 3, 4
    x = torch.tensor([0.1, 0.2, 0.5, -1.0])
    trace, v = lif_trace(x, tau_mem=10.0, tau_syn=5.0, threshold=1.0, steps=4, slope=5.0)
    assert trace.tolist() == [0.0, 0.25, 0.75, 0.0]
    assert v.tolist() == pytest.approx([0.7335, 0.467, 0.9575, -7.335], abs=1e-5)


def test_tau_mem_below_a_half_makes_the_membrane_grow_every_step():
    # with no spikes the membrane obeys v <- (1 - 1/tau) v + i: |1 - 1/0.3| = 7/3 > 1 grows, 1 - 1/10 decays
    x = torch.tensor([-1.0])
    _, stable = lif_trace(x, tau_mem=10.0, tau_syn=5.0, threshold=1.0, steps=32, slope=5.0)
    _, unstable = lif_trace(x, tau_mem=0.3, tau_syn=5.0, threshold=1.0, steps=32, slope=5.0)
    assert abs(stable.item()) < 50  # bounded by the steady state tau_mem * tau_syn * |x|
    assert abs(unstable.item()) > (7 / 3) ** 28


def test_surrogate_gradient_is_the_fast_sigmoid_and_reaches_silent_neurons():
    u = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    s = SpikeFn.apply(u, 5.0)
    s.sum().backward()
    assert s.tolist() == [0.0, 1.0, 1.0]
    assert u.grad.tolist() == pytest.approx([1 / 36, 1.0, 1 / 12.25])
    current = torch.tensor([0.1, 0.2], requires_grad=True)  # the first never spikes, yet learns
    trace, _ = lif_trace(current, 10.0, 5.0, 1.0, 4, 5.0)
    trace.sum().backward()
    assert trace.tolist() == [0.0, 0.25] and (current.grad > 0).all()


def test_trace_stays_in_the_unit_interval_for_any_current():
    current = torch.randn(4, 8, 64, generator=torch.Generator().manual_seed(0)) * 100
    trace, _ = lif_trace(current, 10.0, 5.0, 1.0, 4, 5.0)
    assert trace.shape == current.shape and trace.min() == 0.0 and trace.max() == 1.0
    assert set((trace * 4).unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}


# -- the model -----------------------------------------------------------------------------------------------------


def test_bdh_model_has_spiking_mlps_and_records_only_gradient_forwards():
    model = tiny_bdh()
    mlps = [layer.mlp for layer in model.model.layers]
    assert all(isinstance(m, SpikingMLP) for m in mlps) and is_bdh(model)
    assert not any("gate_proj" in name for name, _ in model.named_parameters())
    ids = torch.randint(3, 32, (2, 5))
    with torch.no_grad():
        model(ids)
    assert mlps[0].record.trace is None
    model(ids)
    record = mlps[0].record
    assert record.trace.shape == (2, 5, 8) and record.trace.requires_grad and record.inputs.shape == (2, 5, 16)
    copy.deepcopy(model)  # a record holding a graph does not block a deep copy (LoRA merge before export)


def test_export_round_trip_gives_equal_logits_and_generations(tmp_path):
    tok = byte_tokenizer()
    spiking = {"tau_mem": 8.0, "threshold": 0.7, "spike_steps": 3}
    model = build_model(ModelSection(preset="bdh-small", spiking=spiking), tok, 64, seed=0)
    assert isinstance(model, BdhForCausalLM) and model.config.tau_mem == 8.0 and model.config.spike_steps == 3
    export_model(model, tok, tmp_path / "final")
    assert (tmp_path / "final" / "bdh.py").is_file()  # loads without trainguard with trust_remote_code=True
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "final")
    assert type(loaded) is BdhForCausalLM and loaded.config.threshold == 0.7
    ids = torch.tensor([tok("hello world")["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
        a = model.generate(ids, max_new_tokens=6, do_sample=False)
        b = loaded.generate(ids, max_new_tokens=6, do_sample=False)
    assert a.shape == (1, ids.shape[1] + 6) and torch.equal(a, b)


def test_a_bdh_folder_takes_the_configured_neurons(tmp_path):
    tok = byte_tokenizer()
    export_model(build_model(ModelSection(preset="bdh-small"), tok, 64, seed=0), tok, tmp_path / "m")
    section = ModelSection(path=str(tmp_path / "m"), spiking={"tau_mem": 20.0})
    assert build_model(section, tok, 64, seed=0).config.tau_mem == 20.0
    assert build_model(ModelSection(path=str(tmp_path / "m")), tok, 64, seed=0).config.tau_mem == 10.0


def test_lora_adapts_the_spiking_projections():
    tok = byte_tokenizer()
    model = build_model(ModelSection(preset="bdh-small"), tok, 32, seed=0)
    peft = add_lora(model, LoraSection(r=4, alpha=8))
    names = {n for n, p in peft.named_parameters() if p.requires_grad}
    assert any("mlp.up_proj.lora_A" in n for n in names) and any("mlp.down_proj.lora_B" in n for n in names)
    out = peft(torch.randint(3, 200, (2, 6)), labels=torch.randint(3, 200, (2, 6)))
    assert math.isfinite(out.loss.item())


# -- config --------------------------------------------------------------------------------------------------------


def test_a_bdh_preset_gets_the_guides_spiking_defaults_and_an_lr():
    section = ModelSection(preset="bdh-small")
    assert section.spiking == SpikingSection()
    assert (section.spiking.tau_mem, section.spiking.tau_syn, section.spiking.threshold) == (10.0, 5.0, 1.0)
    assert (section.spiking.sparsity_weight, section.spiking.target_rate) == (0.001, 0.1)
    assert (section.spiking.hebbian.enabled, section.spiking.hebbian.a_plus, section.spiking.hebbian.a_minus) == (
        False,
        0.01,
        0.0105,
    )
    assert ModelSection(preset="tiny").spiking is None
    assert PRESET_LR["bdh-small"] == 3e-3 and PRESET_LR["bdh-medium"] == 1e-3 and PRESET_LR["bdh-large"] == 6e-4


def test_spiking_on_a_llama_model_is_a_config_error_naming_the_field(tmp_path):
    cfg = tiny_config(tmp_path / "runs", model={"preset": "tiny", "spiking": {"tau_mem": 20}})
    with pytest.raises(ConfigError, match=r"model\.spiking: applies only to a bdh model .*preset 'tiny'"):
        load_config(write_config(tmp_path / "run.yaml", cfg))


def test_tau_mem_must_be_positive_and_warns_below_one():
    with pytest.raises(ValidationError, match="greater than 0"):
        SpikingSection(tau_mem=0)
    with pytest.warns(UserWarning, match=r"model\.spiking\.tau_mem=0\.3 is below 1"):
        SpikingSection(tau_mem=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SpikingSection(tau_mem=1.0)


def test_a_stage_may_list_the_spiking_plugin_with_its_own_weight(tmp_path):
    cfg = tiny_config(tmp_path / "runs", model={"preset": "bdh-small"})
    cfg["stages"][0]["plugins"] = [{"name": "spiking", "sparsity_weight": 2.0}]
    stage = load_config(write_config(tmp_path / "run.yaml", cfg)).stages[0]
    assert "spiking" in STEP_PLUGINS and stage.plugins[0].sparsity_weight == 2.0
    assert stage.plugins[0].target_rate == 0.1


# -- the plug-in ---------------------------------------------------------------------------------------------------


class Batch:
    def __init__(self, token_mask: torch.Tensor) -> None:
        self.token_mask = token_mask


def set_records(model: BdhForCausalLM, traces: list[torch.Tensor], inputs: torch.Tensor | None = None) -> None:
    for layer, trace in zip(model.model.layers, traces, strict=True):
        layer.mlp.record.trace = trace.clone().requires_grad_(True)
        layer.mlp.record.membrane = trace * 2
        layer.mlp.record.inputs = inputs if inputs is not None else torch.zeros(*trace.shape[:2], 16)


def test_sparsity_term_is_weight_times_squared_distance_per_loss_unit():
    model = tiny_bdh()
    plugin = SpikingPlugin(SpikingConfig(sparsity_weight=0.5, target_rate=0.1), ObjectiveContext(model, None))
    mask = torch.tensor([[True, True, False]])  # the padding position fires fully and must not count
    l0 = torch.tensor([[[0.25] * 4 + [0.5] * 4] * 2 + [[1.0] * 8]])  # (1, 3, 8); real tokens: mean 0.375
    l1 = torch.tensor([[[0.0] * 4 + [0.2] * 4] * 2 + [[1.0] * 8]])  # real tokens: mean 0.1
    set_records(model, [l0, l1])
    out = LossOutput({"task": torch.tensor(3.0)}, extras={"units": 10})
    terms = plugin.terms(Batch(mask), out)
    # 0.5 x ((0.375 - 0.1)^2 + (0.1 - 0.1)^2) x 10 units
    assert terms["sparsity"].item() == pytest.approx(0.5 * 0.275**2 * 10)
    assert out.metrics["spike/L0/firing"].item() == pytest.approx(0.375)
    assert out.metrics["spike/L1/firing"].item() == pytest.approx(0.1)
    assert out.metrics["spike/L0/mean"].item() == pytest.approx(0.75)  # membrane = 2 x trace in this fixture
    assert out.metrics["spike/L0/std"].item() == pytest.approx(0.25)  # 2 x std of {0.25, 0.5}
    terms["sparsity"].backward()  # differentiable through the recorded traces
    assert model.model.layers[0].mlp.record.trace is None  # used once
    assert plugin.after_step({"spike/L0/firing": 0.375, "spike/L1/firing": 0.1}) == {
        "spike/firing": pytest.approx(0.2375)
    }


def test_masked_mean_std_without_a_mask_is_the_plain_one():
    values = torch.arange(6.0).view(1, 2, 3)
    mean, std = masked_mean_std(values, torch.ones(1, 2, dtype=torch.bool))
    assert mean.item() == 2.5 and std.item() == pytest.approx(values.std(unbiased=False).item())


def test_stdp_sums_pair_inputs_before_spikes_and_spikes_before_inputs():
    x = torch.tensor([[[1.0], [2.0], [3.0], [9.0]]])  # (B=1, T=4, H=1); the last token is padding
    r = torch.tensor([[[0.0], [1.0], [0.5], [1.0]]])  # (B, T, I=1)
    mask = torch.tensor([[True, True, True, False]])
    pot, dep, pairs = stdp_sums(x, r, mask)
    assert pot.item() == 1 * 1 + 0.5 * 2  # r_t x_{t-1}
    assert dep.item() == 0 * 2 + 1 * 3  # r_{t-1} x_t
    assert pairs.item() == 2


def test_hebbian_update_moves_each_up_projection_by_the_stdp_rule():
    model = tiny_bdh()
    cfg = SpikingConfig(sparsity_weight=0.0, hebbian={"enabled": True})
    plugin = SpikingPlugin(cfg, ObjectiveContext(model, None))
    before = [layer.mlp.up_proj.weight.detach().clone() for layer in model.model.layers]
    x = torch.zeros(1, 3, 16)
    x[0, :, 0] = torch.tensor([1.0, 2.0, 3.0])  # only input unit 0 is active
    trace = torch.zeros(1, 3, 8)
    trace[0, :, 0] = torch.tensor([0.0, 1.0, 0.5])  # only neuron 0 spikes
    plugin.prepare(None)
    set_records(model, [trace, trace], inputs=x)
    plugin.terms(Batch(torch.ones(1, 3, dtype=torch.bool)), LossOutput({"task": torch.tensor(0.0)}))
    metrics = plugin.after_step({})
    # pot = 1*1 + 0.5*2 = 2, dep = 0*2 + 1*3 = 3, 2 pairs: (0.01 x 2 - 0.0105 x 3) / 2 = -0.00575 per layer
    for layer, old in zip(model.model.layers, before, strict=True):
        delta = layer.mlp.up_proj.weight.detach() - old
        assert delta[0, 0].item() == pytest.approx(-0.00575, abs=1e-7)
        assert delta.abs().sum().item() == pytest.approx(0.00575, abs=1e-6)  # no other synapse moved
    assert metrics["spike/hebbian_delta"] == pytest.approx(math.sqrt(2) * 0.00575, rel=1e-5)


def test_a_skipped_step_drops_its_hebbian_sums():
    model = tiny_bdh()
    plugin = SpikingPlugin(SpikingConfig(hebbian={"enabled": True}), ObjectiveContext(model, None))
    trace = torch.ones(1, 3, 8)
    set_records(model, [trace, trace], inputs=torch.ones(1, 3, 16))
    plugin.terms(Batch(torch.ones(1, 3, dtype=torch.bool)), LossOutput({"task": torch.tensor(0.0)}))
    plugin.prepare(None)  # the next step starts without after_step: the skipped step's sums go
    assert plugin.hebbian == []


def test_hebbian_needs_trainable_up_projections():
    model = add_lora(tiny_bdh(), LoraSection(r=2, alpha=4))
    with pytest.raises(ConfigError, match=r"model\.spiking\.hebbian\.enabled"):
        SpikingPlugin(SpikingConfig(hebbian={"enabled": True}), ObjectiveContext(model, None))


def test_the_plugin_is_implied_for_bdh_models_only():
    bdh = ObjectiveContext(tiny_bdh(), None)
    spiking = SpikingSection(sparsity_weight=0.3)
    [plugin] = implied_plugins(bdh, spiking, [])
    assert plugin.config.sparsity_weight == 0.3 and plugin.key == "spiking"
    assert implied_plugins(bdh, None, [])[0].config.sparsity_weight == 0.001
    assert implied_plugins(bdh, spiking, ["spiking"]) == []
    llama = build_model(ModelSection(preset="tiny"), byte_tokenizer(), 32, seed=0)
    assert implied_plugins(ObjectiveContext(llama, None), None, []) == []
    with pytest.raises(ConfigError, match="spiking needs a bdh model"):
        SpikingPlugin(SpikingConfig(), ObjectiveContext(llama, None))


# -- detectors -----------------------------------------------------------------------------------------------------


def test_spike_rate_detector_warns_on_both_sides_with_a_cooldown():
    assert "spike_rate" in DETECTORS and "spike_membrane" in DETECTORS
    assert GuardSection().detectors.spike_rate.max_rate == 0.5
    detector = SpikeRateDetector(SpikeRateConfig(cooldown=10))
    assert detector.phase == "after"
    metrics = {"spike/L0/firing": 0.62, "spike/L1/firing": 0.004, "spike/L2/firing": 0.1, "loss/train": 2.0}
    high, low = detector.observe(metrics, step=5)
    assert (high.kind, high.severity, high.value, high.threshold) == ("spike_rate", "warning", 0.62, 0.5)
    assert "increase the sparsity weight (model.spiking.sparsity_weight)" in high.recommendation
    assert high.data == {"layer": "L0", "side": "high"}
    assert (low.value, low.threshold, low.data["layer"]) == (0.004, 0.01, "L1")
    assert "lower the threshold" in low.recommendation and "raise tau_mem" in low.recommendation
    assert detector.observe(metrics, step=14) == []  # within the cooldown
    assert len(detector.observe(metrics, step=15)) == 2
    assert detector.observe({"spike/L0/firing": float("nan")}, step=100) == []  # the non-finite detector's
    restored = SpikeRateDetector(SpikeRateConfig(cooldown=10))
    restored.load_state_dict(detector.state_dict())
    assert restored.observe(metrics, step=20) == []


def test_membrane_detector_names_the_tau_mem_remedy():
    detector = MembraneDetector(MembraneConfig())
    assert detector.phase == "pre"
    assert detector.observe({"spike/L0/std": 5.0, "spike/L1/std": 9e5}, step=3) == []
    [alert] = detector.observe({"spike/L0/std": 5.0, "spike/L1/std": float("inf")}, step=3)
    assert (alert.kind, alert.severity, alert.data) == ("membrane_overshoot", "warning", {"layers": ["L1"]})
    assert "raise tau_mem (model.spiking.tau_mem" in alert.recommendation
    assert detector.observe({"loss/train": 1.0}, step=4) == []
