"""Absolute position tables: MAE's fixed sin-cos table, 2-D resampling (the releases'
``F.interpolate`` with ``align_corners=False``; antialias off unless a card says so) and
working out a checkpoint table's prefix slots and grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hcbench.backbones.errors import CheckpointError


def sincos_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table (``h*w x dim``): half the channels encode the row, half the
    column; each half is [sin, cos] of position x 1/10000^(2i/(dim/2))."""
    if dim % 4:
        raise ValueError(f"a sin-cos position table needs a width divisible by 4, got {dim}")
    wc, hc = np.meshgrid(np.arange(grid[1], dtype=np.float64), np.arange(grid[0], dtype=np.float64))

    def one(pos: np.ndarray, d: int) -> np.ndarray:
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # MAE's first half encodes the column (w) coordinate, the second the row (h)
    table = np.concatenate([one(wc, dim // 2), one(hc, dim // 2)], axis=1)
    return torch.from_numpy(table).float()


def resample_grid(table: torch.Tensor, src: tuple[int, int], dst: tuple[int, int], mode: str = "bicubic",
                  antialias: bool = False) -> torch.Tensor:
    """``1 x (h*w) x C`` patch position table on grid ``src`` -> grid ``dst`` (2-D, align_corners=False)."""
    if tuple(src) == tuple(dst):
        return table
    c = table.shape[-1]
    grid = table.reshape(1, src[0], src[1], c).permute(0, 3, 1, 2).float()
    kw: dict[str, Any] = {"mode": mode}
    if mode != "nearest":
        kw.update(align_corners=False, antialias=antialias)
    out = F.interpolate(grid, size=tuple(dst), **kw)
    return out.permute(0, 2, 3, 1).reshape(1, dst[0] * dst[1], c).to(table.dtype)


def grid_for(num: int, target: tuple[int, int], hint: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (h, w) grid of ``num`` position tokens: the hint, the target, a square, or the
    factorisation whose aspect ratio is closest to the target grid's."""
    if hint and hint[0] * hint[1] == num:
        return tuple(hint)  # type: ignore[return-value]
    if target[0] * target[1] == num:
        return tuple(target)  # type: ignore[return-value]
    pairs = [(h, num // h) for h in range(2, num) if num % h == 0 and num // h > 1]
    if not pairs:
        return None
    want = math.log(target[0] / target[1])
    return min(pairs, key=lambda p: (abs(math.log(p[0] / p[1]) - want), -min(p)))




def split_table(n: int, model_prefix: int, target: tuple[int, int], hint: tuple[int, int] | None
                ) -> tuple[int, tuple[int, int]]:
    """(prefix slots, patch grid) of an ``n``-slot position table: a split whose grid is the
    hint, the target grid or a square wins over a mere factorisation."""
    found: list[tuple[int, tuple[int, int]]] = []
    for prefix in dict.fromkeys((model_prefix, 1, 0)):
        g = grid_for(n - prefix, target, hint) if n - prefix > 1 else None
        if g is None:
            continue
        if g == tuple(hint or ()) or g == tuple(target) or g[0] == g[1]:
            return prefix, g
        found.append((prefix, g))
    if not found:
        raise CheckpointError(f"cannot infer the position grid of a {n}-slot pos_embed; "
                              "give it in the card (pos_embed: {grid: [h, w]})")
    return found[0]


def adapt_pos_embed(
    ckpt: torch.Tensor, model_pe: torch.Tensor, model_prefix: int, model_grid: tuple[int, int],
    hint: tuple[int, int] | None = None, *, mode: str = "bicubic", antialias: bool = False,
) -> torch.Tensor:
    """Resample a checkpoint's absolute position table to a timm model's grid and prefix count."""
    if ckpt.ndim == 4:  # some repos store B x C x h x w
        ckpt = ckpt.flatten(2).transpose(1, 2)
    ck_prefix, grid = split_table(ckpt.shape[1], model_prefix, model_grid, hint)
    prefix, patches = ckpt[:, :ck_prefix], ckpt[:, ck_prefix:]
    patches = resample_grid(patches, grid, model_grid, mode, antialias)
    if ck_prefix < model_prefix:  # model has a CLS slot the checkpoint lacks: keep the model's init
        prefix = torch.cat([model_pe[:, : model_prefix - ck_prefix].to(prefix), prefix], 1)
    elif ck_prefix > model_prefix:
        prefix = prefix[:, ck_prefix - model_prefix:] if model_prefix else prefix[:, :0]
    return torch.cat([prefix, patches], 1).to(model_pe.dtype)
