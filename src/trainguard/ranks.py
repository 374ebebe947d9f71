"""Many processes (torchrun / accelerate launch): who this process is, and the few collectives the engine needs.

Data parallel without a wrapper: every rank holds the whole model, computes its shard of each micro-batch, and
the engine sums the gradients across ranks with one flattened all-reduce per inner update (the maths of
DistributedDataParallel with `no_sync` over the accumulation). Objectives call the plain module (they
generate, disable LoRA adapters for a reference, read heads), which a DDP wrapper would hide; and an update
whose loss touches only some parameters needs no `find_unused_parameters`. Losses are normalised by the
global count of loss units, so the summed gradient is the one-process gradient of the same global batch.

Every rank must take the same decisions at the same steps, or one waits forever in a collective: `agree`
makes the strongest action any rank wants everyone's (a fault seen on one rank is acted on by all). With one
process every function here is a no-op, so the single-process numbers never change."""

import os
from collections.abc import Iterable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def launched_rank() -> int:
    """This process's rank as the launcher set it, before any process group exists (torchrun's RANK)."""
    return int(os.environ.get("RANK", "0"))


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _device() -> torch.device:
    """Where collectives run: NCCL only moves CUDA tensors, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _all_reduce(tensor: torch.Tensor, op: dist.ReduceOp.RedOpType) -> torch.Tensor:
    """`tensor` reduced across ranks, in place (moved to where the backend reduces, and back)."""
    if not active():
        return tensor
    moved = tensor.to(_device())
    dist.all_reduce(moved, op=op)
    if moved is not tensor:
        tensor.copy_(moved)
    return tensor


def sum_(tensor: torch.Tensor) -> torch.Tensor:
    """All-reduce `tensor` (sum) in place across ranks; returns it."""
    return _all_reduce(tensor, dist.ReduceOp.SUM)


def sum_int(value: int) -> int:
    return int(sum_(torch.tensor([value], dtype=torch.int64)).item()) if active() else value


def max_(tensor: torch.Tensor) -> torch.Tensor:
    """All-reduce `tensor` (max) in place across ranks; returns it."""
    return _all_reduce(tensor, dist.ReduceOp.MAX)


def max_int(value: int) -> int:
    """The largest `value` over the ranks."""
    return int(max_(torch.tensor([value], dtype=torch.int64)).item()) if active() else value


def gather(value: T) -> list[T]:
    """Every rank's `value` (JSON-like: lists, numbers, strings), in rank order; `[value]` with one process."""
    if not active():
        return [value]
    everyone: list[Any] = [None] * world_size()
    dist.all_gather_object(everyone, value)
    return everyone


def sum_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Sum the trainable parameters' gradients across ranks in one flattened all-reduce. A parameter that no
    rank's loss reached keeps no gradient (the optimizer skips it, as with one process); one that only another
    rank's loss reached gets that rank's gradient."""
    params = list(params)
    if not active() or not params:
        return
    had = torch.tensor([float(p.grad is not None) for p in params])
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([*(g.reshape(-1) for g in grads), had.to(grads[0].device, grads[0].dtype)])
    sum_(flat)
    offset = 0
    for p, g, reached in zip(params, grads, flat[-len(params) :].tolist(), strict=True):
        n = g.numel()
        p.grad = g.copy_(flat[offset : offset + n].view_as(g)) if reached > 0 else None
        offset += n
