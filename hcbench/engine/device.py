"""The device a process runs on and the one place mixed precision is decided.

Mixed precision: CUDA devices that support bfloat16 autocast to bf16 (same exponent range as
fp32, no loss scaling needed); older CUDA devices autocast to fp16 *with* a
:class:`torch.amp.GradScaler`, because fp16 gradients of small losses underflow to zero without
one. CPU runs stay in fp32. Fine-tuning, evaluation and pretraining all take their
:class:`Precision` from :func:`precision_for`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given (``cpu``, ``cuda``, ``cuda:1``); else this rank's GPU (``LOCAL_RANK`` under
    ``torchrun``) when CUDA is available, else the CPU."""
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def device_label(device: torch.device) -> str:
    """What a record stores as ``run.device``: ``cuda:<GPU name>`` or ``cpu``."""
    return f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda" else "cpu"


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


@dataclass
class Precision:
    """Autocast dtype (None: fp32) and, for fp16, the gradient scaler of one training run."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: torch.amp.GradScaler | None = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
                          clip_params: Iterable[torch.nn.Parameter] | None = None,
                          clip_grad: float | None = None) -> None:
        """``loss.backward()``, optional grad-norm clipping and ``optimizer.step()``; with a scaler
        the loss is scaled, the gradients unscaled before clipping, and a step whose gradients
        overflowed is skipped (the scaler then lowers its scale)."""
        if self.scaler is None:
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(list(clip_params or []), clip_grad)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if clip_grad:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(list(clip_params or []), clip_grad)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def precision_for(device: torch.device, *, training: bool = True) -> Precision:
    """bf16 autocast where the device supports it, else fp16 with a GradScaler (training only:
    evaluation has no gradients to scale); fp32 on the CPU."""
    if device.type != "cuda":
        return Precision(device.type)
    if bf16_supported(device):
        return Precision("cuda", torch.bfloat16)
    scaler = torch.amp.GradScaler("cuda") if training else None
    return Precision("cuda", torch.float16, scaler)
