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


def device() -> torch.device:
    """This rank's accelerator (its LOCAL_RANK's GPU under torchrun), or the CPU."""
    return torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")


class process_group:
    """``with process_group():`` joins torchrun's process group when WORLD_SIZE > 1 and none is initialised yet
    (NCCL on GPUs, each rank on its LOCAL_RANK's device; gloo on CPUs), and leaves it at the end."""

    def __enter__(self) -> "process_group":
        import os

        self.own = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_dist()
        if self.own:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group(backend)
        return self

    def __exit__(self, *exc) -> None:
        if self.own:
            dist.destroy_process_group()
