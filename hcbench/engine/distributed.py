"""Data parallelism inside one run, launched by ``torchrun`` (gloo on CPU, nccl on GPU).

Outside ``torchrun`` every function degrades to the single-process case.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device_type: str) -> None:
    if launched() and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend)
        if device_type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP-wrap for training when several ranks run; the adapter calls the wrapper like the model."""
    if world_size() == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
    return _Transparent(ddp)


class _Transparent(nn.Module):
    """DDP wrapper that still exposes the wrapped model's attributes (backbone, heads)."""

    def __init__(self, ddp: nn.parallel.DistributedDataParallel):
        super().__init__()
        self.ddp = ddp

    def forward(self, *args, **kwargs):
        return self.ddp(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.ddp.module, name)


def gather_objects(items: list) -> list:
    """Concatenate every rank's list on rank 0 (other ranks get [])."""
    if world_size() == 1:
        return items
    out: list[list] | None = [None] * world_size() if is_main() else None  # type: ignore[list-item]
    dist.gather_object(items, out, dst=0)
    return [x for part in out for x in part] if out is not None else []


def broadcast_object(obj):
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
