"""Data-parallel training with ``torch.distributed`` (gloo on CPU, NCCL on CUDA; ``torchrun``).

Every process runs the same loop on the same model: the objective draws the same batches
on every rank (same generator seed) and each rank keeps its own slice of every batch
(:func:`shard`); after ``backward`` the gradients are averaged over ranks
(:func:`average_gradients`) and, after the update, the BatchNorm running statistics too
(:func:`average_buffers`), so the replicas stay identical. With equal slices the averaged
gradient is the gradient of the whole batch's mean loss, so ``n`` processes train what one
process would, up to BatchNorm statistics taken over each rank's nodes and the neighbour
samples each rank draws. Nothing here does anything when ``torch.distributed`` is not
initialised (or has a single rank).

:mod:`bcemb.experiments.ddp_run` is a small runnable example (and what the tests start)::

    torchrun --standalone --nproc_per_node=2 -m bcemb.experiments.ddp_run --out curve.json
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["world", "shard", "average_gradients", "average_buffers", "average_scalar", "init_from_env"]


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(tensors: Sequence[Tensor]) -> tuple[Tensor, ...]:
    """This rank's slice (every ``world``-th row from ``rank``) of each of the batch's tensors."""
    rank, size = world()
    if size == 1:
        return tuple(tensors)
    return tuple(t[rank::size] for t in tensors)


def average_gradients(params: Sequence[nn.Parameter]) -> None:
    """Average the gradients of ``params`` over ranks (one flat all-reduce)."""
    _, size = world()
    if size == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks."""
    _, size = world()
    if size == 1:
        return
    for buf in module.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf /= size


def average_scalar(value: float) -> float:
    """The mean of ``value`` over ranks."""
    _, size = world()
    if size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / size


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Initialise the process group from ``torchrun``'s environment (gloo on CPU, NCCL on CUDA)."""
    if "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return world()
