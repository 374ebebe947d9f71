"""The `spiking` step plug-in of bdh models: the sparsity term, spike statistics and the optional Hebbian update.

Statistics ride on the objective's `LossOutput.metrics` (synced with the step's other numbers: no extra host
sync), so every step logs `spike/L{i}/firing` (mean spike trace: the firing rate, spikes per neuron per simulation
step), `spike/L{i}/mean` and `spike/L{i}/std` (of the last membrane potential: what overshoots when τ_mem is too
small), `spike/firing` (their mean over layers) and `loss/sparsity`. A stage training a bdh model gets this
plug-in from the model's `spiking` settings unless it lists its own."""

from typing import Any, Literal

import torch
from torch import nn

from trainguard.errors import ConfigError
from trainguard.models.bdh import SpikingMLP, spiking_layers
from trainguard.models.config import SpikeTraining
from trainguard.objectives.base import STEP_PLUGINS, LossOutput, ObjectiveContext, StepPlugin, StepPluginConfig


class SpikingConfig(StepPluginConfig, SpikeTraining):
    name: Literal["spiking"] = "spiking"


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `values` (B, T, N) over the positions where `mask` (B, T) holds (all when None)."""
    if mask is None:
        return values.mean()
    w = mask.to(values.dtype)[..., None]  # (B, T, 1)
    return (values * w).sum() / (w.sum() * values.shape[-1]).clamp_min(1.0)


def masked_mean_std(values: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of `values` (B, T, N) over the positions where `mask` (B, T) holds (all when None)."""
    if mask is None:
        return values.mean(), values.std()
    w = mask.to(values.dtype)[..., None]  # (B, T, 1)
    n = (w.sum() * values.shape[-1]).clamp_min(1.0)
    mean = masked_mean(values, mask)
    var = (((values - mean) * w) ** 2).sum() / n
    return mean, var.sqrt()


def sparsity_penalty(rates: list[torch.Tensor], target: float) -> torch.Tensor:
    """Σ_layers (mean trace - target)²: the guide's sparsity regulariser before its weight."""
    return torch.stack([(r - target) ** 2 for r in rates]).sum()


def stdp_sums(
    inputs: torch.Tensor, trace: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pair sums of the token-lag STDP rule for one up-projection (I, H): potentiation Σ r_t ⊗ x_{t-1} (input
    before spike), depression Σ r_{t-1} ⊗ x_t (spike before input), over adjacent pairs of real tokens, and the
    number of such pairs. inputs (B, T, H), trace (B, T, I), mask (B, T)."""
    pair = torch.ones(trace.shape[:2], dtype=trace.dtype, device=trace.device) if mask is None else mask.to(trace)
    pair = (pair[:, 1:] * pair[:, :-1])[..., None]  # (B, T-1, 1)
    x, r = inputs.to(trace.dtype), trace
    potentiation = torch.einsum("bti,btj->ij", r[:, 1:] * pair, x[:, :-1])
    depression = torch.einsum("bti,btj->ij", r[:, :-1] * pair, x[:, 1:])
    return potentiation, depression, pair.sum()


@STEP_PLUGINS.register("spiking")
class SpikingPlugin(StepPlugin):
    """Adds `sparsity = sparsity_weight x Σ_layers (mean trace - target_rate)²` per loss unit and records the spike
    statistics of each micro-batch. With `hebbian.enabled`, after each applied step every up-projection W (I, H)
    moves by the token-lag STDP rule ΔW = A+ · Σ r_t ⊗ x_{t-1} / N - A- · Σ r_{t-1} ⊗ x_t / N, where x is the
    MLP's input (after the layer norm), r the spike trace, and N the number of adjacent pairs of real tokens in
    the step's micro-batches: an input followed by a spike strengthens the synapse, a spike followed by the input
    weakens it; A- > A+ lets uncorrelated activity decay."""

    Config = SpikingConfig
    config: SpikingConfig

    def __init__(self, config: SpikingConfig, ctx: ObjectiveContext) -> None:
        super().__init__(config, ctx)
        self.layers: list[SpikingMLP] = spiking_layers(ctx.model)  # type: ignore[assignment]
        if not self.layers:
            raise ConfigError("plugins: spiking needs a bdh model (preset bdh-small/medium/large or its export)")
        if config.hebbian.enabled and not all(plain_trainable(m.up_proj) for m in self.layers):
            raise ConfigError(
                "model.spiking.hebbian.enabled: the Hebbian update changes the up-projections, which this stage "
                "freezes (LoRA or freeze_base): train all weights or turn it off"
            )
        self.hebbian: list[list[torch.Tensor]] = []  # per layer [potentiation, depression, pairs] of this step
        self.step_open = False  # a micro-batch's terms were taken since the last prepare

    def prepare(self, batch: Any) -> None:
        if self.step_open:  # the first micro-batch of a new step: what a skipped step gathered is dropped
            self.hebbian, self.step_open = [], False

    def terms(self, batch: Any, out: LossOutput) -> dict[str, torch.Tensor]:
        rates = []
        for i, layer in enumerate(self.layers):
            record = layer.record
            if record.trace is None:
                continue
            trace, membrane, inputs = record.trace, record.membrane, record.inputs
            record.trace = record.membrane = record.inputs = None  # used once: its graph is freed by backward
            mask = token_mask(batch, trace)
            rate = masked_mean(trace, mask)
            mean, std = masked_mean_std(membrane, mask)
            rates.append(rate)
            out.metrics |= {f"spike/L{i}/firing": rate.detach(), f"spike/L{i}/mean": mean, f"spike/L{i}/std": std}
            if self.config.hebbian.enabled:
                sums = list(stdp_sums(inputs, trace.detach(), mask))
                if len(self.hebbian) <= i:
                    self.hebbian.append(sums)
                else:
                    self.hebbian[i] = [a + b for a, b in zip(self.hebbian[i], sums, strict=True)]
        self.step_open = True
        if not rates:
            return {}
        units = out.extras.get("units", 1)
        return {"sparsity": self.config.sparsity_weight * sparsity_penalty(rates, self.config.target_rate) * units}

    def after_step(self, metrics: dict[str, float]) -> dict[str, float]:
        """The mean firing rate over layers (from the synced metrics) and, when on, the Hebbian update."""
        rates = [metrics[k] for k in (f"spike/L{i}/firing" for i in range(len(self.layers))) if k in metrics]
        out = {"spike/firing": sum(rates) / len(rates)} if rates else {}
        if self.config.hebbian.enabled and self.hebbian:
            out["spike/hebbian_delta"] = self.apply_hebbian()
        self.hebbian, self.step_open = [], False
        return out

    @torch.no_grad()
    def apply_hebbian(self) -> float:
        """Apply this step's STDP update to each up-projection; returns the update's Frobenius norm (one sync)."""
        h = self.config.hebbian
        squares = []
        for layer, (potentiation, depression, pairs) in zip(self.layers, self.hebbian, strict=False):
            n = pairs.clamp_min(1.0)
            delta = (h.a_plus * potentiation - h.a_minus * depression) / n
            weight = layer.up_proj.weight
            weight.add_(delta.to(weight.dtype))
            squares.append((delta.float() ** 2).sum())
        return float(torch.stack(squares).sum().sqrt())


def token_mask(batch: Any, trace: torch.Tensor) -> torch.Tensor | None:
    """The batch's real-token mask (B, T) when it matches the forward's shape (token batches); None otherwise."""
    mask = getattr(batch, "token_mask", None)
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == tuple(trace.shape[:2]):
        return mask.to(trace.device)
    return None


def plain_trainable(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return isinstance(module, nn.Linear) and weight is not None and weight.requires_grad


def implied_plugins(ctx: ObjectiveContext, spiking: SpikeTraining | None, listed: list[str]) -> list[SpikingPlugin]:
    """The `spiking` plug-in a stage gets without listing it: for a bdh model (a preset, or a folder whose config
    is BdhConfig), from the model's `spiking` settings (the guide's defaults when unset)."""
    if "spiking" in listed or not spiking_layers(ctx.model):
        return []
    fields = spiking.model_dump(include=set(SpikeTraining.model_fields)) if spiking is not None else {}
    return [SpikingPlugin(SpikingConfig(**fields), ctx)]
