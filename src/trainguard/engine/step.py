"""What one engine step accumulates on the device, and its single host sync.

An engine step runs one or more inner updates (SFT: one, over grad_accum micro-batches; PPO: epochs x
minibatches). Losses, loss terms, objective metrics and grad statistics stay on the device as running sums
until `sync`, which moves them to the host in one `.tolist()` and turns them into the step's metrics:
loss and terms are means over the inner updates, objective metrics means over micro-batches, `grad/norm`
and `grad/max` the worst inner update (what the guard must see). An objective's `extras["ratios"]`
({name: (numerator, denominator)}, e.g. SFT's per-task loss sum and target count) are summed over the step's
micro-batches and divided at the sync: a mean over micro-batches would dilute a value that some lack.

With many processes the sums (loss, terms, metrics, ratios, tokens) are all-reduced in that same sync, so every
rank logs and judges the global step; gradient statistics are read after the gradients' own all-reduce, so
they are already global (a fault injected into one rank's gradients stays its own, and `agree` shares the
action it calls for).
"""

import math
from dataclasses import dataclass, field

import torch

from trainguard import ranks
from trainguard.engine.stats import global_norm
from trainguard.objectives import LossOutput


@dataclass
class StepTensors:
    device: torch.device
    track_updates: bool = False  # keep each update's outputs apart, for an early stop
    loss: torch.Tensor = field(init=False)
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    metrics: dict[str, tuple[torch.Tensor, int]] = field(default_factory=dict)  # (sum, micro-batches with it)
    ratios: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # (numerator, denominator)
    micro_batches: int = 0
    tokens: int = 0  # this rank's tokens in the step; after `sync`, every rank's
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
            total, count = self.metrics.get(name, (0.0, 0))
            self.metrics[name] = (value + total, count + 1)
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
        on_device = {"loss": self.loss} | {f"term:{t}": v for t, v in self.terms.items()}
        on_device |= {f"metric:{m}": total for m, (total, _) in self.metrics.items()}
        for r, (num, den) in self.ratios.items():
            on_device |= {f"ratio:{r}": num, f"den:{r}": den}
        on_host = {"tokens": float(self.tokens)} | {f"count:{m}": float(c) for m, (_, c) in self.metrics.items()}
        names = shared_names([*on_device, *on_host])
        device_names = [n for n in names if n not in on_host and not n.startswith("count:")]
        host_names = [n for n in names if n in on_host or n.startswith("count:")]
        zero = torch.zeros((), device=self.device)
        summed = torch.cat(
            [
                torch.stack([on_device.get(n, zero).float() for n in device_names]),
                torch.tensor([on_host.get(n, 0.0) for n in host_names], device=self.device),  # one copy
            ]
        )
        gmax = self.maxes[0] if len(self.maxes) == 1 else torch.stack(self.maxes).max()
        local = torch.stack([gmax.float(), *(n.float() for n in self.norms), *extra])
        values = torch.cat([ranks.sum_(summed), local.to(summed.device)]).tolist()
        k, n = len(names), self.updates
        got = dict(zip(device_names + host_names, values[:k], strict=True))
        norms, rest = values[k + 1 : k + 1 + n], values[k + 1 + n :]
        out = {
            "loss/train": got["loss"] / n,
            "grad/norm": max(norms, key=lambda v: v if math.isfinite(v) else math.inf),
            "grad/max": values[k],
        }
        for name, value in got.items():
            kind, _, key = name.partition(":")
            if kind == "term":
                out[f"loss/{key}"] = value / n
            elif kind == "metric" and got[f"count:{key}"] > 0:
                out[key] = value / got[f"count:{key}"]
            elif kind == "ratio" and got[f"den:{key}"] > 0:
                out[key] = value / got[f"den:{key}"]
        self.tokens = int(got["tokens"])
        return out, norms, rest

    def last_metric(self, key: str) -> float:
        """One extra sync after an inner update: `key` over that update alone (for an early stop): a loss
        term's sum over its micro-batches, or an objective metric's mean over them."""
        micro, self.update_micro = self.update_micro, []
        name = key.removeprefix("loss/")
        if key == "loss/train":
            value = sum(out.total for out in micro)
        elif key.startswith("loss/") and name in micro[0].terms:
            value = sum(out.terms[name] for out in micro)
        else:  # a mean over every rank's micro-batches (each rank has as many)
            total = sum(out.metrics[key].float() for out in micro)
            return float(ranks.sum_(total.reshape(1))[0]) / (len(micro) * ranks.world_size())
        return float(ranks.sum_(value.detach().float().reshape(1))[0])  # global units: the ranks' shares add up


def shared_names(names: list[str]) -> list[str]:
    """`names` in one order on every rank: their union (a rank whose shard lacks a task adds a zero)."""
    if not ranks.active():
        return names
    return sorted({name for names in ranks.gather(sorted(names)) for name in names})
