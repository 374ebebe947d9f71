"""The `bdh` spiking model (Dragon Hatching guide): a Llama whose feed-forward blocks are leaky integrate-and-fire
neurons trained through a surrogate gradient. Attention, KV cache, generate(), peft and safetensors are Llama's.

Departs from the guide's snntorch neuron in one place: decays are forward-Euler (1 - 1/τ) instead of exp(-1/τ), so
τ_mem < 0.5 makes the membrane overshoot and grow by |1 - 1/τ| > 1 per simulation step until the gradients overflow:
the guide's NaN failure, remedied by raising τ_mem (the spike trace stays in [0, 1]: the loss itself stays finite).
This file imports only torch and transformers: an export carries a copy of it (`auto_map`), so the folder also
loads without trainguard through `AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True)`.
"""

from typing import Any

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

MODEL_TYPE = "trainguard_bdh"


@strict
class BdhConfig(LlamaConfig):
    """A Llama config plus the neurons' constants; every field is saved in config.json."""

    model_type = MODEL_TYPE

    tau_mem: float = 10.0  # membrane time constant, in simulation steps (guide default 10)
    tau_syn: float = 5.0  # synaptic current time constant, in simulation steps (guide default 5)
    threshold: float = 1.0  # membrane potential at which a neuron spikes (guide default 1)
    spike_steps: int = 4  # Euler steps simulated per token
    surrogate_slope: float = 5.0  # k of the fast-sigmoid surrogate derivative 1 / (1 + k|v - θ|)²


class SpikeFn(torch.autograd.Function):
    """Heaviside step forward, fast-sigmoid derivative backward (Zenke & Ganguli's SuperSpike surrogate)."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(u)
        ctx.slope = slope
        return (u >= 0).to(u.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (u,) = ctx.saved_tensors
        return grad / (ctx.slope * u.abs() + 1.0) ** 2, None


def lif_trace(
    current: torch.Tensor, tau_mem: float, tau_syn: float, threshold: float, steps: int, slope: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drive LIF neurons with a constant input `current` for `steps` Euler steps; returns (spike trace, last
    membrane potential), both shaped like `current`. Per step: i ← (1 - 1/τ_syn)·i + x; v ← (1 - 1/τ_mem)·v + i;
    s = H(v - θ); v ← v - s·θ (reset by subtraction, detached as snntorch does). The trace is the mean of s over
    the steps, in [0, 1]."""
    syn_decay, mem_decay = 1.0 - 1.0 / tau_syn, 1.0 - 1.0 / tau_mem
    syn = torch.zeros_like(current)
    mem = torch.zeros_like(current)
    spikes = torch.zeros_like(current)
    for _ in range(steps):
        syn = syn_decay * syn + current
        mem = mem_decay * mem + syn
        s = SpikeFn.apply(mem - threshold, slope)
        mem = mem - s.detach() * threshold
        spikes = spikes + s
    return spikes / steps, mem


class SpikeRecord:
    """What a SpikingMLP's last gradient-enabled forward saw: its input (B, T, H) and last membrane potential
    (B, T, I), detached, and its spike trace (B, T, I) with its graph (for the sparsity term). A deep copy
    (LoRA merging for export) starts empty: a tensor with a graph cannot be copied."""

    def __init__(self) -> None:
        self.inputs: torch.Tensor | None = None
        self.trace: torch.Tensor | None = None
        self.membrane: torch.Tensor | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> "SpikeRecord":
        return SpikeRecord()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


class SpikingMLP(nn.Module):
    """up-projection → input current → LIF neurons over `spike_steps` → spike trace → down-projection."""

    def __init__(self, config: BdhConfig) -> None:
        super().__init__()
        self.config = config
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=config.mlp_bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=config.mlp_bias)
        self.record = SpikeRecord()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        current = self.up_proj(x)  # (B, T, I)
        trace, membrane = lif_trace(current, c.tau_mem, c.tau_syn, c.threshold, c.spike_steps, c.surrogate_slope)
        if torch.is_grad_enabled():  # a training forward; generation and evaluation leave the record alone
            self.record.inputs, self.record.trace, self.record.membrane = x.detach(), trace, membrane.detach()
        return self.down_proj(trace.to(x.dtype))


class BdhForCausalLM(LlamaForCausalLM):
    """Llama with each decoder layer's `mlp` a SpikingMLP (no gate projection)."""

    config_class = BdhConfig
    config: BdhConfig

    def __init__(self, config: BdhConfig) -> None:
        super().__init__(config)
        for layer in self.model.layers:
            layer.mlp = SpikingMLP(config)
        self.post_init()  # initialises the new projections like Llama's


def is_bdh(model: nn.Module) -> bool:
    """Whether `model` (or the model under a peft or accelerate wrapper) is a bdh model, by its config's type."""
    config = getattr(model, "config", None)
    return getattr(config, "model_type", None) == MODEL_TYPE


def spiking_layers(model: nn.Module) -> list[SpikingMLP]:
    """The SpikingMLPs of any wrapping of a bdh model (peft, accelerate), in layer order."""
    return [m for m in model.modules() if type(m).__name__ == "SpikingMLP"]


AutoConfig.register(MODEL_TYPE, BdhConfig, exist_ok=True)
AutoModelForCausalLM.register(BdhConfig, BdhForCausalLM, exist_ok=True)
BdhConfig.register_for_auto_class()
BdhForCausalLM.register_for_auto_class("AutoModelForCausalLM")
