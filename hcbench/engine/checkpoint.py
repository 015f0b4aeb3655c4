"""Training checkpoints: model, optimizer, scheduler and progress, written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from hcbench.results.store import atomic_write_bytes


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, *, epoch: int, step: int) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return {"epoch": int(state["epoch"]), "step": int(state["step"])}
