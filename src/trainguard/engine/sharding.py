"""FSDP (`run.fsdp`): parameters, gradients and optimizer state sharded over the processes by torch's
`fully_shard` (FSDP2): one unit per decoder layer and one for the rest. Its weights are gathered in the root's
forward, so a sharded model is always called whole (a reward model reads its hidden states through it).

`fully_shard` changes the module in place (its parameters become DTensors) and wraps nothing, so objectives
keep calling the plain module as they do without it. What differs is confined here: the gradients arrive
reduce-scattered (summed, not averaged: losses are normalised by the global count of loss units), norms add
their shards' squares over the ranks, checkpoints hold each rank's own shards (the same world size resumes
them), and whatever one process reads alone (an export, an evaluation) gets a gathered, plain copy."""

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.tensor import DTensor, init_device_mesh

from trainguard import ranks
from trainguard.engine.stats import global_norm
from trainguard.errors import ConfigError


def shard(model: nn.Module) -> None:
    """Shard `model` over every process (a one-process group is made when none was launched): each of its
    `_no_split_modules` blocks (the decoder layers) is one unit, the embeddings, final norm and head another."""
    from torch.distributed.fsdp import FSDPModule, fully_shard  # torch >= 2.6; imported only when configured

    if not hasattr(FSDPModule, "set_force_sum_reduction_for_comms"):
        raise ConfigError(f"run.fsdp needs a newer torch than {torch.__version__} (FSDP2's sum-only reductions)")
    device = next(model.parameters()).device
    if not dist.is_initialized():  # one process, started without torchrun
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    for module in [m for m in model.modules() if m is not model and type(m).__name__ in blocks]:
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest (embeddings, final norm, a head tied to the embeddings or not)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # the engine's loss is already over the global batch
            module.set_force_sum_reduction_for_comms(True)  # a plain sum (gloo has no pre-multiplied one)


def is_sharded(model: nn.Module) -> bool:
    """Whether `shard` made `model` an FSDP module (its parameters this rank's shards)."""
    if not dist.is_initialized():
        return False  # never sharded: no process group (and no FSDP import) exists
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def local(tensor: Any) -> Any:
    """This rank's shard of a sharded tensor (sharing its storage); anything else as it is."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def norms(lists: list[list[torch.Tensor]], sharded: list[bool]) -> torch.Tensor:
    """The L2 norm of each list of local tensors, the ones flagged `sharded` added up over the ranks (one
    all-reduce for all lists) and the replicated ones counted once."""
    parts = [[t for t, s in zip(ts, sharded, strict=True) if s] for ts in lists]
    whole = [[t for t, s in zip(ts, sharded, strict=True) if not s] for ts in lists]
    spread = ranks.sum_(torch.stack([global_norm(p).float().square() for p in parts]))
    return (spread + torch.stack([global_norm(w).float().square() for w in whole]).to(spread.device)).sqrt()


def gathered(model: nn.Module, build: Callable[[], nn.Module]) -> nn.Module | None:
    """`model` whole on rank 0 and None on the others, for what one process does alone (exports, evaluations):
    an unsharded model as it is; a sharded one gathered (a collective) into a plain copy that `build` makes."""
    if not is_sharded(model):
        return model if ranks.is_main() else None
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not ranks.is_main():
        return None
    plain = build()
    plain.load_state_dict(state)
    device = next(local(p) for p in model.parameters()).device
    return plain.to(device=device, dtype=next(iter(state.values())).dtype).train(model.training)


class LocalOptimizerState:
    """An optimizer's state with every sharded tensor as this rank's shard, so it saves as plain tensors
    (and loads with `weights_only`), and turned back into shards of the parameters' layout on load."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        state = self.optimizer.state_dict()
        state["state"] = {i: {k: local(v) for k, v in s.items()} for i, s in state["state"].items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        state = {**state, "state": {int(i): dict(s) for i, s in state["state"].items()}}
        for i, values in state["state"].items():
            p = params[i]
            if not isinstance(p, DTensor):
                continue
            for key, value in values.items():
                if torch.is_tensor(value) and value.ndim > 0 and value.shape == p.to_local().shape:
                    layout = {"shape": p.shape, "stride": p.stride()}
                    values[key] = DTensor.from_local(value, p.device_mesh, p.placements, **layout)
        self.optimizer.load_state_dict(state)
