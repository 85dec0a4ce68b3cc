"""The few torch.distributed helpers the trainer needs; each is the identity outside a process group."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over the ranks (a copy; ``t`` is unchanged). Batch statistics of equal-size batches."""
    if not is_dist():
        return t
    out = t.detach().clone().float()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return (out / dist.get_world_size()).to(t.dtype)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shape tensors of every rank along dim 0."""
    if not is_dist():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def barrier() -> None:
    if is_dist():
        dist.barrier()
