"""SOLIDER's Swin Transformer (mmcv-style) with its semantic controller, at any input size.

Computes as SOLIDER's own ``SwinTransformer`` does, with timm's parameter names
(``layers.i.blocks.j.attn.qkv``, ``layers.i.downsample`` at the start of stage ``i``,
final ``norm``), so a SOLIDER/mmcv checkpoint loads after renaming keys and reordering the
patch-merging weights (:func:`hcbench.backbones.checkpoint.mmcv_swin_to_timm`):

- patch embedding: 4x4/4 convolution after zero-padding the image bottom/right to a multiple
  of 4, then LayerNorm;
- each block: ``x + W-MSA(norm1(x))``, ``x + MLP(norm2(x))``; the normed map is zero-padded
  bottom/right to a multiple of the window (pad tokens are attended to, as mmcv does), odd
  blocks roll by ``window // 2`` with the -100 mask on the padded map, even for maps smaller
  than a window;
- patch merging: zero-pad odd sides, concatenate the 2x2 neighbours in the order
  (0,0), (1,0), (0,1), (1,1) (row, column), LayerNorm, bias-free linear to twice the width;
- semantic controller (``semantic_weight`` >= 0): after each stage but the last, the
  downsampled map is scaled by ``softplus(W_i [s, 1-s])`` and shifted by ``B_i [s, 1-s]``;
  the last stage's output is taken before its modulation, so that one has no effect;
- outputs: the last stage's map after its norm (dense, stride 32) and its spatial mean
  (global embedding). The other stages' output norms (``norm0..2``) are not used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from hcbench.backbones.features import Backbone, Features
from hcbench.backbones.vit import Mlp  # the same fc1 / GELU / fc2 block (and key names) as the ViTs


@dataclass
class SwinConfig:
    width: int = 96
    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    heads: list[int] = field(default_factory=lambda: [3, 6, 12, 24])
    window_size: int = 7
    patch_size: int = 4
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-5
    semantic_weight: float = 0.2


def _relative_index(ws: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return rel[..., 0] * (2 * ws - 1) + rel[..., 1]


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, ws: int, qkv_bias: bool):
        super().__init__()
        self.heads, self.ws = heads, ws
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", _relative_index(ws), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)  # 1 x heads x n x n
        if mask is not None:  # nW x n x n, windows are batch-major (b = B * nW)
            nw = mask.shape[0]
            bias = (bias + mask.unsqueeze(1)).repeat(b // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


def _partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)


def _reverse(win: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    c = win.shape[-1]
    b = win.shape[0] // ((h // ws) * (w // ws))
    return win.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)


def _shift_mask(hp: int, wp: int, ws: int, shift: int, device) -> torch.Tensor:
    img = torch.zeros(1, hp, wp, 1, device=device)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img[:, hs, wsl, :] = cnt
            cnt += 1
    win = _partition(img, ws).squeeze(-1)  # nW x ws*ws
    diff = win.unsqueeze(1) - win.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ws: int, shift: int, mlp_ratio: float, qkv_bias: bool, eps: float):
        super().__init__()
        self.ws, self.shift = ws, shift
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, heads, ws, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        h, w = hw
        ws = self.ws
        y = self.norm1(x).view(b, h, w, c)
        y = F.pad(y, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = y.shape[1], y.shape[2]
        mask = None
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
            mask = _shift_mask(hp, wp, ws, self.shift, y.device)
        y = _reverse(self.attn(_partition(y, ws), mask), ws, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=eps)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = hw
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = x.shape[1] // 2, x.shape[2] // 2
        # neighbours (row, col) = (0,0), (1,0), (0,1), (1,1), the original Swin's concatenation
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), (h2, w2)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int, eps: float):
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch
        x = F.pad(x, (0, (p - x.shape[-1] % p) % p, 0, (p - x.shape[-2] % p) % p))
        x = self.proj(x)
        hw = (x.shape[-2], x.shape[-1])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class Stage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, cfg: SwinConfig, downsample: bool):
        super().__init__()
        self.downsample = PatchMerging(dim // 2, cfg.norm_eps) if downsample else None
        ws = cfg.window_size
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, ws, 0 if i % 2 == 0 else ws // 2, cfg.mlp_ratio, cfg.qkv_bias, cfg.norm_eps)
            for i in range(depth))


class SoliderSwin(Backbone):
    """See the module docstring. ``semantic_weight`` < 0 builds no controller (plain Swin)."""

    def __init__(self, config: SwinConfig, img_size: tuple[int, int] = (256, 128)):
        super().__init__()
        self.config = c = config
        n = len(c.depths)
        if len(c.heads) != n:
            raise ValueError(f"swin: {len(c.heads)} head counts for {n} stages")
        dims = [c.width * 2**i for i in range(n)]
        self.embed_dim = dims[-1]
        self.stride = c.patch_size * 2 ** (n - 1)
        self.num_layers = sum(c.depths)
        self.patch_embed = PatchEmbed(c.width, c.patch_size, c.norm_eps)
        self.layers = nn.ModuleList(Stage(dims[i], c.depths[i], c.heads[i], c, i > 0) for i in range(n))
        self.norm = nn.LayerNorm(dims[-1], eps=c.norm_eps)
        self.semantic_weight = float(c.semantic_weight)
        if self.semantic_weight >= 0:
            # SOLIDER keeps one pair per stage; the last stage's pair (width of the last stage)
            # is computed but never reaches an output
            out = [dims[min(i + 1, n - 1)] for i in range(n)]
            self.semantic_embed_w = nn.ModuleList(nn.Linear(2, d) for d in out)
            self.semantic_embed_b = nn.ModuleList(nn.Linear(2, d) for d in out)
        self.apply(_init)

    def forward_features(self, x: torch.Tensor) -> Features:
        b = x.shape[0]
        tokens, hw = self.patch_embed(x)
        sem = None
        if self.semantic_weight >= 0:
            s = torch.full((b, 1), self.semantic_weight, dtype=tokens.dtype, device=tokens.device)
            sem = torch.cat([s, 1 - s], -1)
        for i, stage in enumerate(self.layers):
            if stage.downsample is not None:
                tokens, hw = stage.downsample(tokens, hw)
                if sem is not None:  # the modulation SOLIDER applies after stage i-1's downsample
                    w = self.semantic_embed_w[i - 1](sem).unsqueeze(1)
                    bb = self.semantic_embed_b[i - 1](sem).unsqueeze(1)
                    tokens = tokens * F.softplus(w) + bb
            for blk in stage.blocks:
                tokens = blk(tokens, hw)
        tokens = self.norm(tokens)
        dense = tokens.transpose(1, 2).reshape(b, self.embed_dim, *hw)
        return Features(embedding=tokens.mean(1), dense=dense, stride=self.stride)

    def layer_id(self, name: str) -> int:
        if name.startswith("patch_embed"):
            return 0
        starts = [sum(self.config.depths[:i]) for i in range(len(self.config.depths))]
        parts = name.split(".")
        if parts[0] == "layers":
            i = int(parts[1])
            if parts[2] == "blocks":
                return starts[i] + int(parts[3]) + 1
            return starts[i] + 1  # the downsample opens stage i
        if parts[0] in ("semantic_embed_w", "semantic_embed_b"):
            i = int(parts[1])
            return starts[min(i + 1, len(starts) - 1)] + 1
        return self.num_layers + 1


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
