"""What one engine step accumulates on the device, and its single host sync.

An engine step runs one or more inner updates (SFT: one, over grad_accum micro-batches; PPO: epochs x
minibatches). Losses, loss terms, objective metrics and grad statistics stay on the device as running sums
until `sync`, which moves them to the host in one `.tolist()` and turns them into the step's metrics:
loss and terms are means over the inner updates, objective metrics means over micro-batches, `grad/norm`
and `grad/max` the worst inner update (what the guard must see).
"""

import math
from dataclasses import dataclass, field

import torch

from trainguard.engine.stats import global_norm
from trainguard.objectives import LossOutput


@dataclass
class StepTensors:
    device: torch.device
    loss: torch.Tensor = field(init=False)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    micro_batches: int = 0
    norms: list[torch.Tensor] = field(default_factory=list)  # pre-clip global norm of each inner update
    maxes: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.loss = torch.zeros((), device=self.device)

    def add_micro(self, loss: torch.Tensor, out: LossOutput, units: int) -> None:
        """Accumulate a micro-batch: `loss` is its share of the update loss (already / units)."""
        self.loss += loss.detach()
        for name, term in out.terms.items():
            value = term.detach() / units
            self.terms[name] = self.terms[name] + value if name in self.terms else value
        for name, value in out.metrics.items():
            value = value.detach().float()
            self.metrics[name] = self.metrics[name] + value if name in self.metrics else value
        self.micro_batches += 1

    def add_grads(self, grads: list[torch.Tensor], grad_max: torch.Tensor, norm: torch.Tensor | None) -> None:
        """Record an inner update's gradient statistics; `norm` is the clip's pre-clip norm, if it clipped."""
        self.maxes.append(grad_max)
        self.norms.append(norm if norm is not None else global_norm(grads))

    @property
    def updates(self) -> int:
        return len(self.norms)

    def sync(self, extra: list[torch.Tensor]) -> tuple[dict[str, float], list[float], list[float]]:
        """The step's one host sync: (metrics, each update's grad norm, the `extra` values)."""
        terms, metrics = list(self.terms), list(self.metrics)
        gmax = self.maxes[0] if len(self.maxes) == 1 else torch.stack(self.maxes).max()
        stacked = [
            self.loss,
            gmax.float(),
            *(n.float() for n in self.norms),
            *(self.terms[t] for t in terms),
            *(self.metrics[m] for m in metrics),
            *extra,
        ]
        values = torch.stack(stacked).tolist()
        n = self.updates
        norms = values[2 : 2 + n]
        rest = values[2 + n :]
        out = {
            "loss/train": values[0] / n,
            "grad/norm": max(norms, key=lambda v: v if math.isfinite(v) else math.inf),
            "grad/max": values[1],
        }
        out |= {f"loss/{t}": v / n for t, v in zip(terms, rest, strict=False)}
        rest = rest[len(terms) :]
        out |= {m: v / self.micro_batches for m, v in zip(metrics, rest, strict=False)}
        return out, norms, rest[len(metrics) :]

    def last_metric(self, key: str) -> float:
        """One extra sync after an inner update: the running mean of `key` (for an early stop)."""
        if key == "loss/train":
            return float(self.loss) / self.updates
        name = key.removeprefix("loss/")
        if name in self.terms:
            return float(self.terms[name]) / self.updates
        return float(self.metrics[key]) / self.micro_batches
