"""What one engine step accumulates on the device, and its single host sync.

An engine step runs one or more inner updates (SFT: one, over grad_accum micro-batches; PPO: epochs x
minibatches). Losses, loss terms, objective metrics and grad statistics stay on the device as running sums
until `sync`, which moves them to the host in one `.tolist()` and turns them into the step's metrics:
loss and terms are means over the inner updates, objective metrics means over micro-batches, `grad/norm`
and `grad/max` the worst inner update (what the guard must see). An objective's `extras["ratios"]`
({name: (numerator, denominator)}, e.g. SFT's per-task loss sum and target count) are summed over the step's
micro-batches and divided at the sync: a mean over micro-batches would dilute a value that some lack.
"""

import math
from dataclasses import dataclass, field

import torch

from trainguard.engine.stats import global_norm
from trainguard.objectives import LossOutput


@dataclass
class StepTensors:
    device: torch.device
    track_updates: bool = False  # keep each update's outputs apart, for an early stop
    loss: torch.Tensor = field(init=False)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    ratios: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (numerator, denominator)
    micro_batches: int = 0
    norms: list[torch.Tensor] = field(default_factory=list)  # pre-clip global norm of each inner update
    maxes: list[torch.Tensor] = field(default_factory=list)
    update_micro: list[LossOutput] = field(default_factory=list)  # the current update's outputs (early stop)

    def __post_init__(self) -> None:
        self.loss = torch.zeros((), device=self.device)

    def add_micro(self, loss: torch.Tensor, out: LossOutput, units: int) -> None:
        """Accumulate a micro-batch: `loss` is its share of the update loss (already / units)."""
        self.loss += loss.detach()
        for name, term in out.terms.items():
            if name == "train":
                raise ValueError("a loss term may not be named 'train' (loss/train is the sum of the terms)")
            value = term.detach().float() / units
            self.terms[name] = self.terms[name] + value if name in self.terms else value
        for name, value in out.metrics.items():
            value = value.detach().float()
            self.metrics[name] = self.metrics[name] + value if name in self.metrics else value
        for name, (num, den) in out.extras.get("ratios", {}).items():
            num, den = num.detach().float(), den.detach().float()
            if name in self.ratios:
                num, den = self.ratios[name][0] + num, self.ratios[name][1] + den
            self.ratios[name] = (num, den)
        self.micro_batches += 1

        if self.track_updates:
            self.update_micro.append(LossOutput({n: t.detach() / units for n, t in out.terms.items()}, out.metrics))

    def add_grads(self, grads: list[torch.Tensor], grad_max: torch.Tensor, norm: torch.Tensor | None) -> None:
        """Close an inner update: its gradient statistics; `norm` is the clip's pre-clip norm, if it clipped."""
        self.maxes.append(grad_max)
        self.norms.append(norm if norm is not None else global_norm(grads))

    @property
    def updates(self) -> int:
        return len(self.norms)

    def sync(self, extra: list[torch.Tensor]) -> tuple[dict[str, float], list[float], list[float]]:
        """The step's one host sync: (metrics, each update's grad norm, the `extra` values)."""
        terms, metrics, ratios = list(self.terms), list(self.metrics), list(self.ratios)
        gmax = self.maxes[0] if len(self.maxes) == 1 else torch.stack(self.maxes).max()
        stacked = [
            self.loss,
            gmax.float(),
            *(n.float() for n in self.norms),
            *(self.terms[t] for t in terms),
            *(self.metrics[m] for m in metrics),
            *(v for r in ratios for v in self.ratios[r]),
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
        pairs, rest = rest[len(metrics) : len(metrics) + 2 * len(ratios)], rest[len(metrics) + 2 * len(ratios) :]
        out |= {r: n / d for r, n, d in zip(ratios, pairs[0::2], pairs[1::2], strict=True) if d > 0}
        return out, norms, rest

    def last_metric(self, key: str) -> float:
        """One extra sync after an inner update: `key` over that update alone (for an early stop): a loss
        term's sum over its micro-batches, or an objective metric's mean over them."""
        micro, self.update_micro = self.update_micro, []
        if key == "loss/train":
            return float(sum(out.total for out in micro))
        name = key.removeprefix("loss/")
        if key.startswith("loss/") and name in micro[0].terms:
            return float(sum(out.terms[name] for out in micro))
        return float(sum(out.metrics[key].float() for out in micro)) / len(micro)
