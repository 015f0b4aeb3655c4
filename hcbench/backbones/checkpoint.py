"""Reading backbone weights from the checkpoint layouts seen in the field.

Only safe formats: ``.safetensors``, or ``torch.load(weights_only=True)`` (a pickle that
needs arbitrary code is refused). The state dict is unwrapped from ``state_dict`` /
``model`` / ``student`` containers, ``module.`` is stripped, and when keys live under a
``backbone.`` or ``student.`` prefix only those are kept (heads, necks and teachers are
dropped and reported). OpenMMLab ViT layouts (mmseg/mmdet ``layers.N.ln1``..., mmpose/ViTPose
``last_norm``) are remapped to timm names. Absolute position embeddings are resampled in 2-D
to the model's grid.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

WRAPPERS = ("state_dict", "model", "student", "module", "model_ema")
PREFIXES = ("module.", "backbone.", "student.", "encoder.")
# keys of pretraining/fine-tuning heads that are never part of a backbone
HEAD_PATTERNS = (r"^head\.", r"^fc\.", r"^classifier\.", r"^decoder\.", r"^mask_token$", r"^dpal_", r"^projector\.",
                 r"^pred\.", r"^head_dist\.", r"^keypoint_head\.", r"^decode_head\.", r"^auxiliary_head\.",
                 r"^neck\.", r"^dino_head\.", r"^teacher\.")


class CheckpointError(RuntimeError):
    pass


@dataclass
class LoadReport:
    path: str
    sha256: str
    loaded: int = 0
    dropped: list[str] = field(default_factory=list)  # removed before loading (heads, teacher, ...)
    missing: list[str] = field(default_factory=list)  # in the model, absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, unknown to the model
    interpolated: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    remapped: str | None = None  # name of a key-layout conversion applied

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded from {self.path}"]
        if self.remapped:
            parts.append(f"layout {self.remapped} remapped")
        for k, (a, b) in self.interpolated.items():
            parts.append(f"{k} resampled {list(a)} -> {list(b)}")
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped: {', '.join(self.dropped[:6])}{' ...' if len(self.dropped) > 6 else ''}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing: {', '.join(self.missing[:6])}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected: {', '.join(self.unexpected[:6])}")
        return "; ".join(parts)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Raw tensors (and safetensors metadata) from a checkpoint file, safely."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: the checkpoint is a pickle that needs arbitrary code to load "
            f"(torch.load weights_only=True failed: {str(e).splitlines()[0]}). Re-save it as plain tensors "
            "(torch.save(model.state_dict())) or as .safetensors."
        ) from e
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint: {e}") from e
    return unwrap(obj, path), {}


def unwrap(obj, path: str | Path = "<checkpoint>") -> dict[str, torch.Tensor]:
    for _ in range(4):
        if isinstance(obj, dict) and not _is_flat_tensor_dict(obj):
            for key in WRAPPERS:
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            else:
                break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {sorted(obj)[:10]})")
    return tensors


def _is_flat_tensor_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes; where keys live under ``backbone.``/``student.``, drop the rest."""
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            inside = [k for k in sd if k.startswith(prefix)]
            if not inside:
                continue
            if prefix != "module." and len(inside) < len(sd):
                dropped += [k for k in sd if not k.startswith(prefix)]
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            changed = True
    return sd, dropped


_MM_VIT = [  # OpenMMLab (mmcv/mmseg/mmdet/mmpretrain) VisionTransformer -> timm
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.attn\.in_proj_", r"blocks.\1.attn.qkv."),
    (r"^layers\.(\d+)\.attn\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.attn\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^layers\.(\d+)\.attn\.proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^ln1\.", "norm."),
    (r"^pre_norm\.", "norm_pre."),
]


def remap_layout(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Convert OpenMMLab ViT key layouts to timm's, returning the layout's name (or None)."""
    if any(re.match(r"^layers\.\d+\.ln1\.", k) for k in sd):
        out = {}
        for k, v in sd.items():
            nk = k
            for pat, rep in _MM_VIT:
                nk = re.sub(pat, rep, nk)
            out[nk] = v
        return out, "openmmlab-vit"
    if any(k.startswith("last_norm.") for k in sd):  # mmpose ViTPose backbone
        return {("norm." + k[len("last_norm."):]) if k.startswith("last_norm.") else k: v for k, v in sd.items()}, "vitpose"
    return sd, None


def _grid_for(num: int, target: tuple[int, int], hint: tuple[int, int] | None) -> tuple[int, int] | None:
    """The (h, w) grid of ``num`` position tokens: the hint, a square, or the factorisation
    whose aspect ratio is closest to the target grid's."""
    if hint and hint[0] * hint[1] == num:
        return hint
    pairs = [(h, num // h) for h in range(1, num + 1) if num % h == 0]
    if not pairs:
        return None
    want = math.log(target[0] / target[1])
    return min(pairs, key=lambda p: (abs(math.log(p[0] / p[1]) - want), -min(p)))


def adapt_pos_embed(
    ckpt: torch.Tensor, model_pe: torch.Tensor, model_prefix: int, model_grid: tuple[int, int],
    hint: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Resample a checkpoint's absolute position embedding to the model's grid and prefix count."""
    from timm.layers import resample_abs_pos_embed

    if ckpt.ndim == 4:  # some repos store B x C x h x w
        ckpt = ckpt.flatten(2).transpose(1, 2)
    n = ckpt.shape[1]
    want_grid_n = model_grid[0] * model_grid[1]
    for ck_prefix in dict.fromkeys((model_prefix, 1, 0)):
        grid_n = n - ck_prefix
        if grid_n <= 0:
            continue
        grid = _grid_for(grid_n, model_grid, hint)
        if grid is not None and (grid_n == want_grid_n or grid[0] > 1 and grid[1] > 1):
            break
    else:
        raise CheckpointError(f"cannot infer the position grid of a {tuple(ckpt.shape)} pos_embed")
    prefix, patches = ckpt[:, :ck_prefix], ckpt[:, ck_prefix:]
    if tuple(grid) != tuple(model_grid):
        patches = resample_abs_pos_embed(patches, list(model_grid), list(grid), num_prefix_tokens=0)
    if ck_prefix < model_prefix:  # model has a CLS slot the checkpoint lacks: keep the model's init
        prefix = torch.cat([model_pe[:, : model_prefix - ck_prefix].to(prefix), prefix], 1)
    elif ck_prefix > model_prefix:
        prefix = prefix[:, ck_prefix - model_prefix:] if model_prefix else prefix[:, :0]
    return torch.cat([prefix, patches], 1).to(model_pe.dtype)


def load_into(
    model: nn.Module, path: str | Path, *, strict: bool = True, pos_grid: tuple[int, int] | None = None,
) -> LoadReport:
    """Load a backbone checkpoint into a :class:`TimmBackbone`-like module (``model.model``)."""
    target = getattr(model, "model", model)
    raw, _meta = read_state_dict(path)
    report = LoadReport(path=str(path), sha256=file_sha256(path))
    sd, report.dropped = strip_prefixes(raw)
    sd, report.remapped = remap_layout(sd)
    own = target.state_dict()
    heads = [k for k in sd if k not in own and any(re.match(p, k) for p in HEAD_PATTERNS)]
    report.dropped += heads
    sd = {k: v for k, v in sd.items() if k not in heads}

    if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
        grid = tuple(target.patch_embed.grid_size)
        prefix = 0 if getattr(target, "no_embed_class", False) else int(getattr(target, "num_prefix_tokens", 1))
        old = tuple(sd["pos_embed"].shape)
        sd["pos_embed"] = adapt_pos_embed(sd["pos_embed"], own["pos_embed"], prefix, grid, pos_grid)
        report.interpolated["pos_embed"] = (old, tuple(sd["pos_embed"].shape))

    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if mismatched:
        detail = ", ".join(f"{k}: {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in mismatched[:5])
        raise CheckpointError(f"{path}: tensors do not fit the architecture ({detail})")
    result = target.load_state_dict(sd, strict=False)
    report.missing = sorted(result.missing_keys)
    report.unexpected = sorted(result.unexpected_keys)
    report.loaded = len(sd) - len(report.unexpected)
    if strict and (report.missing or report.unexpected):
        raise CheckpointError(f"{path}: checkpoint does not match the architecture: {report.summary()}")
    model.checkpoint_sha256 = report.sha256
    return report
