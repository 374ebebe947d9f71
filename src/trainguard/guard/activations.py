"""Activation statistics on chosen modules every N steps: mean, std and firing rate (share > 0).

The issue's default band (warn above 0.5) suits ReLU-style sparsity; a SwiGLU MLP fires ~50% by
construction, so the default ceiling is 0.95 and a relative drop (units dying) is checked as well."""

from typing import Any

import torch
from pydantic import Field
from torch import nn

from trainguard.guard.alerts import Alert
from trainguard.section import Section


class ActivationConfig(Section):
    enabled: bool = Field(True, description="Sample activation statistics.")
    every: int = Field(10, ge=1, description="Steps between samples (hooks exist only on sampled steps).")
    modules: list[str] = Field(
        ["mlp.act_fn", "mlp.act", "mlp.activation_fn"],
        description="Module name suffixes to watch: the MLP activation of Llama/Qwen/Mistral (act_fn), GPT-2 (act) "
        "and Phi/OPT-style models (activation_fn); none matching is a warning.",
    )
    min_active: float = Field(0.01, ge=0, le=1, description="Firing rate below this warns (dead units).")
    max_active: float = Field(0.95, ge=0, le=1, description="Firing rate above this warns (saturation).")
    max_drop: float = Field(0.5, gt=0, lt=1, description="A fall of this share below the running firing rate warns.")


class ActivationMonitor:
    def __init__(self, config: ActivationConfig) -> None:
        self.config = config
        self.baseline: dict[str, float] = {}  # EMA of each module's firing rate
        self._handles: list[Any] = []
        self._stats: dict[str, torch.Tensor] = {}

    def due(self, step: int) -> bool:
        return self.config.enabled and step % self.config.every == 0

    def watched(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in model.named_modules() if any(n.endswith(s) for s in self.config.modules)]

    def attach(self, model: nn.Module) -> None:
        for name, module in self.watched(model):
            self._handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str) -> Any:
        def record(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            out = output.detach().float()
            self._stats[name] = torch.stack([out.mean(), out.std(), (out > 0).float().mean()])

        return record

    def collect(self, step: int) -> tuple[dict[str, float], list[Alert]]:
        for h in self._handles:
            h.remove()
        self._handles = []
        c, metrics, alerts = self.config, {}, []
        for name, stats in self._stats.items():
            mean, std, firing = stats.tolist()
            short = name.replace("base_model.model.", "").replace("model.layers.", "L")
            metrics |= {f"act/{short}/mean": mean, f"act/{short}/std": std, f"act/{short}/firing": firing}
            base = self.baseline.get(name)
            if firing < c.min_active or firing > c.max_active:
                bound = c.min_active if firing < c.min_active else c.max_active
                alerts.append(
                    Alert("activations", "warning", step, firing, bound, f"inspect {short}", {"module": name})
                )
            elif base is not None and firing < (1 - c.max_drop) * base:
                alerts.append(
                    Alert(
                        "activations",
                        "warning",
                        step,
                        firing,
                        (1 - c.max_drop) * base,
                        f"units of {short} stopped firing",
                        {"module": name},
                    )
                )
            else:
                self.baseline[name] = firing if base is None else 0.9 * base + 0.1 * firing
        self._stats = {}
        return metrics, alerts

    def state_dict(self) -> dict[str, Any]:
        return {"baseline": dict(self.baseline)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.baseline = dict(state["baseline"])
