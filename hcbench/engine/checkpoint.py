"""Training checkpoints: the one format for fine-tuning and pretraining, written atomically.

``last.pt`` holds ``model`` (the state dict of what is trained: the task model, or a
pretraining method with its heads and EMA copies), ``optimizer``, ``scheduler``, ``scaler``
(fp16 loss scaling; empty otherwise), ``epoch`` and ``step`` (optimizer steps done),
``identity`` (JSON of what a resumed run must agree on) and ``losses`` (the last step's).
Loaded with ``weights_only=True``: a checkpoint never runs code.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hcbench.errors import ResumeError
from hcbench.io import atomic_write_bytes


def save_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, *, epoch: int, step: int,
                    identity: dict[str, Any] | None = None, scaler: dict | None = None,
                    losses: dict[str, float] | None = None) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler or {}, "epoch": epoch, "step": step,
                "identity": json.dumps(identity or {}, sort_keys=True), "losses": losses or {}}, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by a full disk, or not a checkpoint at all
        raise ResumeError(f"{path}: unreadable training checkpoint ({type(e).__name__}: {e}); "
                          "delete it (or pass --force) to start the run again") from e


def identity_mismatch(saved: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """The identity fields on which a checkpoint and the current run disagree."""
    keys = sorted(set(saved) | set(identity))
    return [k for k in keys if saved.get(k) != identity.get(k)]


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler, *,
                    identity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Restore ``model``/``optimizer``/``scheduler`` from ``path``; returns the checkpoint (epoch,
    step, scaler, losses). Raises :class:`ResumeError` before touching anything when the
    checkpoint's identity differs from ``identity`` (another run wrote it)."""
    state = read_checkpoint(path)
    saved = json.loads(state.get("identity") or "{}")
    # comparing through JSON makes tuples and lists, ints and their JSON forms equal
    wanted = json.loads(json.dumps(identity or {}))
    diff = identity_mismatch(saved, wanted)
    if diff:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {wanted.get(k)!r}" for k in diff)
        raise ResumeError(f"{path}: cannot resume, the run differs ({detail})")
    # "method": the key pretraining checkpoints used before fine-tuning and pretraining shared a loop
    model.load_state_dict(state["model"] if "model" in state else state["method"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    state["epoch"], state["step"] = int(state["epoch"]), int(state["step"])
    return state
