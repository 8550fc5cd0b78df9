"""Multi-GPU (or multi-process CPU) training through ``torchrun``, with the same engine.

Run, e.g. on one machine with 4 GPUs::

    torchrun --nproc_per_node 4 -m napari_tumorseg.cli train --model unet --data DIR --out OUT

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; :func:`init_from_env` joins the process
group (NCCL on CUDA, gloo on CPU), each process trains on its shard of every epoch (a
seeded permutation split across ranks like ``DistributedSampler``) with the model wrapped
in ``DistributedDataParallel``, and rank 0 alone validates and writes checkpoints, the
history and the console lines. ``--batch-size`` is per process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_from_env(device: str = "auto") -> DistContext:
    """Join the torchrun process group if launched by torchrun; a no-op otherwise."""
    if env_world_size() <= 1:
        return context()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device in ("auto", "cuda")
        backend = "nccl" if use_cuda else "gloo"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return context()


def context() -> DistContext:
    """The current process's place in the group (rank 0 of 1 without torchrun)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistContext()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = dist.get_backend()
    device = torch.device("cuda", local) if backend == "nccl" else torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device)


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def any_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank when it is true on any (NaN loss, early stop)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def sum_dict(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum float counters (loss sums, confusion counts) over the ranks."""
    keys = sorted(values)
    if not keys:
        return {}
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return dict(zip(keys, t.tolist()))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
