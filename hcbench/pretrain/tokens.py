"""Token-level access to backbones for pretraining objectives.

:func:`encode` works for any :class:`Backbone` (CLS/pooled embedding + patch tokens of the
dense map). :func:`vit_forward` runs a timm ViT's own pieces (``patch_embed``, ``_pos_embed``,
``blocks``, ``norm``) so that a method can keep only some patches (MAE-style masking), stop
after ``blocks`` blocks, or tap intermediate blocks, without re-implementing the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from hcbench.backbones.features import Backbone
from hcbench.pretrain.views import fit_to_stride


def normalize(x: torch.Tensor, backbone: Backbone) -> torch.Tensor:
    """[0, 1] images -> the backbone's input statistics (for code that runs a backbone's parts
    directly, like :func:`vit_forward`, or needs normalised pixels as targets; calling the
    backbone itself normalises)."""
    return backbone.normalize(x)


def is_vit(backbone: Backbone) -> bool:
    return bool(getattr(backbone, "is_vit", False)) and hasattr(getattr(backbone, "model", None), "blocks")


def encode(backbone: Backbone, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """(global embedding B x C, patch tokens B x N x C, grid (h, w)) of [0, 1] images."""
    if is_vit(backbone):
        images = fit_to_stride(images, backbone.stride)
    f = backbone(images)  # the backbone normalises [0, 1] input with its own mean/std
    return f.embedding, f.tokens(), (int(f.dense.shape[-2]), int(f.dense.shape[-1]))


@dataclass
class Tokens:
    """``prefix`` B x P x C and ``patches`` B x N x C after the final norm (when it ran);
    ``taps[k]``: the whole sequence after ``k`` blocks, before any norm."""

    prefix: torch.Tensor
    patches: torch.Tensor
    grid: tuple[int, int]
    taps: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def cls(self) -> torch.Tensor:
        return self.prefix[:, 0]


def vit_forward(backbone: Backbone, images: torch.Tensor, *, keep: torch.Tensor | None = None,
                blocks: int | None = None, taps: tuple[int, ...] = (), final_norm: bool = True) -> Tokens:
    """Run a timm ViT on [0, 1] ``images``.

    ``keep``: B x K indices (row-major over the patch grid) of the patches to keep; the others
    never enter the blocks. ``blocks``: run only the first ``blocks`` blocks (the final norm is
    then skipped unless ``final_norm``). ``taps``: block counts whose outputs are returned.
    """
    if not is_vit(backbone):
        raise TypeError(f"{type(backbone).__name__} ({backbone.spec or '?'}) is not a timm ViT; "
                        "this objective needs a ViT student")
    m = backbone.model
    x = m.patch_embed(normalize(images, backbone))  # B x h x w x C (dynamic_img_size -> NHWC)
    if x.ndim != 4:
        raise TypeError("the ViT must be created with dynamic_img_size=True (hcbench backbones are)")
    grid = (int(x.shape[1]), int(x.shape[2]))
    x = m._pos_embed(x)
    P = int(getattr(m, "num_prefix_tokens", 1))
    if keep is not None:
        patches = torch.gather(x[:, P:], 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([x[:, :P], patches], 1)
    x = m.norm_pre(m.patch_drop(x))
    n_blocks = len(m.blocks) if blocks is None else int(blocks)
    out_taps: dict[int, torch.Tensor] = {}
    for i, blk in enumerate(m.blocks[:n_blocks]):
        x = blk(x)
        if i + 1 in taps:
            out_taps[i + 1] = x
    if final_norm and (blocks is None or n_blocks == len(m.blocks)):
        x = m.norm(x)
    return Tokens(prefix=x[:, :P], patches=x[:, P:], grid=grid, taps=out_taps)


def resize_tokens(tokens: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Bilinear resampling of B x (h*w) x C tokens to another grid (teacher/student grids differ)."""
    if tuple(grid) == tuple(new_grid):
        return tokens
    B, N, C = tokens.shape
    if N != grid[0] * grid[1]:
        raise ValueError(f"{N} tokens do not form a {grid[0]}x{grid[1]} grid")
    x = tokens.transpose(1, 2).reshape(B, C, *grid)
    x = F.interpolate(x, size=tuple(new_grid), mode="bilinear", align_corners=False)
    return x.flatten(2).transpose(1, 2)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """B x 3 x H x W -> B x (H/p * W/p) x (p*p*3), row-major over the patch grid (MAE layout)."""
    B, C, H, W = images.shape
    if H % patch or W % patch:
        raise ValueError(f"image size {H}x{W} is not a multiple of the patch size {patch}")
    x = images.reshape(B, C, H // patch, patch, W // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(B, (H // patch) * (W // patch), patch * patch * C)
