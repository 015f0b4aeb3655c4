"""A plain ViT whose every parameter a release varies can be set from a backbone card.

One module for the human-centric ViT releases (DPAL, SAIP, PATH, HAP, ViTPose, TransReID,
Sapiens): per-block head counts (DPAL's student widens its last block), CLS token or not,
patch size/stride/padding (ViTPose and Sapiens pad by 2, TransReID's overlapping variant
strides by 12), learned or fixed sin-cos position table and how it is resampled (mode,
antialias), ViTPose's extra slot 0 added to every patch, final norm on or off, and which
token or pooling is the global embedding. Parameter names follow timm (``patch_embed.proj``,
``blocks.N.attn.qkv``, ``norm``), so release layouts map onto it by renaming keys only.

The block is pre-norm: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` with exact GELU, and
attention scaled by ``head_dim ** -0.5`` (``head_dim = width / heads`` of that block).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hcbench.backbones.features import Backbone, Features
from hcbench.backbones.posembed import resample_grid, sincos_2d, split_table


@dataclass
class PosEmbedConfig:
    kind: str = "learned"  # learned | sincos | none
    resize: str = "bicubic"
    antialias: bool = False
    add_slot0_to_patches: bool = False
    grid: tuple[int, int] | None = None


@dataclass
class ViTConfig:
    width: int = 192
    depth: int = 12
    heads: int | list[int] = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    cls_token: bool = True
    patch_size: int = 16
    patch_stride: int | None = None
    patch_padding: int = 0
    pos_embed: PosEmbedConfig = field(default_factory=PosEmbedConfig)
    final_norm: bool = True
    norm_eps: float = 1e-6
    global_pool: str = "cls"  # cls | mean

    def heads_per_block(self) -> list[int]:
        heads = [self.heads] * self.depth if isinstance(self.heads, int) else list(self.heads)
        if len(heads) != self.depth:
            raise ValueError(f"heads lists {len(heads)} blocks but depth is {self.depth}")
        for h in heads:
            if h < 1 or self.width % h:
                raise ValueError(f"width {self.width} is not divisible by {h} heads")
        return heads

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        d = dict(d)
        pe = d.pop("pos_embed", None)
        cfg = cls(**d)
        if isinstance(pe, dict):
            cfg.pos_embed = PosEmbedConfig(**{k: (tuple(v) if k == "grid" and v is not None else v) for k, v in pe.items()})
        elif isinstance(pe, PosEmbedConfig):
            cfg.pos_embed = pe
        return cfg


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, eps: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, stride: int, padding: int):
        super().__init__()
        self.patch, self.stride_, self.padding = patch, stride, padding
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=stride, padding=padding)

    def grid(self, hw: tuple[int, int]) -> tuple[int, int]:
        return tuple((s + 2 * self.padding - self.patch) // self.stride_ + 1 for s in hw)  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConfigurableViT(Backbone):
    """A ViT built from a :class:`ViTConfig`; see the module docstring."""

    def __init__(self, config: ViTConfig, img_size: tuple[int, int] = (256, 192)):
        super().__init__()
        self.config = c = config
        heads = c.heads_per_block()
        if c.global_pool == "cls" and not c.cls_token:
            raise ValueError("global_pool 'cls' needs cls_token: true (use global_pool: mean)")
        self.embed_dim = c.width
        self.stride = int(c.patch_stride or c.patch_size)
        self.num_layers = c.depth
        self.patch_embed = PatchEmbed(c.width, c.patch_size, self.stride, c.patch_padding)
        self.grid = self.patch_embed.grid(tuple(img_size))
        if min(self.grid) < 1:
            raise ValueError(f"input {tuple(img_size)} is smaller than one {c.patch_size}px patch")
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width)) if c.cls_token else None
        pe = c.pos_embed
        self.num_pos_prefix = 1 if (c.cls_token or pe.add_slot0_to_patches) else 0
        if pe.kind == "none":
            self.pos_embed = None
        else:
            table = torch.zeros(1, self.num_pos_prefix + self.grid[0] * self.grid[1], c.width)
            if pe.kind == "sincos":
                table[0, self.num_pos_prefix:] = sincos_2d(c.width, self.grid)
            else:
                nn.init.trunc_normal_(table, std=0.02)
            # a fixed table is still stored (and loaded): the releases save it with the weights
            self.pos_embed = nn.Parameter(table, requires_grad=pe.kind == "learned")
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(Block(c.width, h, c.mlp_ratio, c.qkv_bias, c.norm_eps) for h in heads)
        self.norm = nn.LayerNorm(c.width, eps=c.norm_eps) if c.final_norm else nn.Identity()
        self.apply(_init)

    # -- position table -------------------------------------------------------------------
    def adapt_pos_embed(self, table: torch.Tensor, src_grid: tuple[int, int] | None = None) -> torch.Tensor:
        """A checkpoint's table (any grid; with or without the model's prefix slot) -> this
        model's grid, resampled as the card says (bicubic, no antialias by default)."""
        if table.ndim == 4:  # some repos store 1 x C x h x w
            table = table.flatten(2).transpose(1, 2)
        prefix, g = split_table(table.shape[1], self.num_pos_prefix, self.grid, src_grid)
        pre, patches = table[:, :prefix], table[:, prefix:]
        pe = self.config.pos_embed
        patches = resample_grid(patches, g, self.grid, pe.resize, pe.antialias)
        if prefix < self.num_pos_prefix:  # keep this model's (initial) prefix slot
            pre = torch.cat([self.pos_embed[:, : self.num_pos_prefix - prefix].detach().to(pre), pre], 1)
        elif prefix > self.num_pos_prefix:
            pre = pre[:, prefix - self.num_pos_prefix:]
        return torch.cat([pre, patches], 1)

    def _pos(self, grid: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor]:
        table = self.pos_embed
        pre, patches = table[:, : self.num_pos_prefix], table[:, self.num_pos_prefix:]
        if tuple(grid) != tuple(self.grid):
            pe = self.config.pos_embed
            if pe.kind == "sincos":
                patches = sincos_2d(self.embed_dim, grid).unsqueeze(0).to(patches)
            else:
                patches = resample_grid(patches, self.grid, grid, pe.resize, pe.antialias)
        return (pre if self.num_pos_prefix else None), patches

    # -- forward --------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> Features:
        b = x.shape[0]
        fmap = self.patch_embed(x)
        h, w = fmap.shape[-2:]
        tokens = fmap.flatten(2).transpose(1, 2)
        if self.pos_embed is not None:
            pre, patches = self._pos((h, w))
            tokens = tokens + patches
            if self.config.pos_embed.add_slot0_to_patches:
                tokens = tokens + pre  # ViTPose: slot 0 is added to every patch
        if self.cls_token is not None:
            cls = self.cls_token.expand(b, -1, -1)
            if self.pos_embed is not None and not self.config.pos_embed.add_slot0_to_patches:
                cls = cls + self.pos_embed[:, :1]
            tokens = torch.cat([cls, tokens], 1)
        for blk in self.blocks:
            tokens = blk(tokens)
        tokens = self.norm(tokens)
        p = 1 if self.cls_token is not None else 0
        prefix, patches = tokens[:, :p], tokens[:, p:]
        dense = patches.transpose(1, 2).reshape(b, self.embed_dim, h, w)
        emb = prefix[:, 0] if self.config.global_pool == "cls" else patches.mean(1)
        return Features(embedding=emb, dense=dense, stride=self.stride, prefix=prefix if p else None)

    def layer_id(self, name: str) -> int:
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return self.num_layers + 1


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        nn.init.trunc_normal_(m.weight, std=math.sqrt(1.0 / fan_in))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
