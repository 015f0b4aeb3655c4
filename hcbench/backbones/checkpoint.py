"""Reading backbone weights from the checkpoint layouts seen in the field.

Only safe formats: ``.safetensors``, or ``torch.load(weights_only=True)`` whose allow-list is
widened by exactly one class, ``argparse.Namespace`` (DPAL, SAIP and SOLIDER training
checkpoints store their arguments in one); a pickle that needs any other code is refused.

Unwrapping: the state dict is taken from ``state_dict`` / ``model`` / ``student`` / ``teacher``
(a card's ``container`` chooses) containers; ``module.`` is stripped, and when keys live under
``backbone.`` / ``backbone_module.`` (PATH) / ``base.`` (TransReID) / ``student.`` / ``encoder.``
only those are kept (heads, necks, teachers are dropped and reported). Pretraining-only keys
(DPAL/SAIP ``inter_norm.*``, MAE ``decoder_*``/``mask_token``, task heads) are dropped and
reported. Layouts converted to the model's names: OpenMMLab ViT (mmpretrain/mmseg/Sapiens
``layers.N.ln1`` ...), ViTPose (``last_norm``) and mmcv Swin (SOLIDER: ``stages.i`` ->
``layers.i``, patch merging moved to the next stage and its weights reordered from
``nn.Unfold``'s channel order to the original Swin's). Absolute position tables are resampled
in 2-D to the model's grid: bicubic without antialias by default, as the releases do.
Layout detection/conversion lives in :mod:`hcbench.backbones.layouts`, position tables in
:mod:`hcbench.backbones.posembed`; their public names are re-exported here.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hcbench.backbones.errors import CheckpointError, CheckpointNotFoundError, PartialLoadWarning  # noqa: F401
from hcbench.backbones.layouts import (  # noqa: F401  (re-exported: the loader's public names)
    PREFIXES,
    _merge_weight,
    check_architecture,
    detect_layout,
    mmcv_swin_to_timm,
    prepare_state_dict,
    remap_layout,
    strip_prefixes,
)
from hcbench.backbones.posembed import adapt_pos_embed, grid_for, split_table  # noqa: F401
from hcbench.io import sha256_file

WRAPPERS = ("state_dict", "model", "student", "module", "model_ema", "teacher")
# keys of pretraining/fine-tuning heads that are never part of a backbone
HEAD_PATTERNS = (r"^head\.", r"^fc\.", r"^classifier\.", r"^decoder\.", r"^mask_token$", r"^dpal_", r"^projector\.",
                 r"^pred\.", r"^head_dist\.", r"^keypoint_head\.", r"^decode_head\.", r"^auxiliary_head\.",
                 r"^neck\.", r"^dino_head\.", r"^teacher\.", r"^inter_norm\.", r"^decoder_", r"^bottleneck\.",
                 r"^norm\d+\.", r"^avgpool\.", r"^fc_norm\.")


@dataclass
class LoadReport:
    path: str
    sha256: str
    loaded: int = 0
    dropped: list[str] = field(default_factory=list)  # removed before loading (heads, teacher, ...)
    missing: list[str] = field(default_factory=list)  # in the model, absent from the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, unknown to the model
    interpolated: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs model shape" (inspect only)
    remapped: str | None = None  # name of a key-layout conversion applied
    layout: str = "timm"  # the layout detected from the keys
    strict: bool = True

    @property
    def resampled(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
        return self.interpolated

    @property
    def complete(self) -> bool:
        return not self.missing and not self.unexpected and not self.mismatched

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: counts and names, for printing and for result records."""
        d = asdict(self)
        d["interpolated"] = {k: [list(a), list(b)] for k, (a, b) in self.interpolated.items()}
        d["counts"] = {"loaded": self.loaded, "dropped": len(self.dropped), "missing": len(self.missing),
                       "unexpected": len(self.unexpected), "resampled": len(self.interpolated),
                       "mismatched": len(self.mismatched)}
        return d

    def summary(self) -> str:
        parts = [f"{self.loaded} tensors loaded from {self.path} (layout {self.layout})"]
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
    return sha256_file(path)


# --------------------------------------------------------------------------- reading
def _check_file(path: Path) -> None:
    if not path.exists():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file")
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix in (".safetensors", ".pth", ".pt", ".bin", ".ckpt"))
        hint = f" (inside: {', '.join(inside[:5])})" if inside else ""
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file; name the weights file itself{hint}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the checkpoint file is empty (0 bytes)")


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a ``.safetensors`` file, with a clear error for a broken one."""
    path = Path(path)
    _check_file(path)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # SafetensorError, OSError: a truncated/renamed/garbage file
        raise CheckpointError(_bad_safetensors(path, e)) from None


def _bad_safetensors(path: Path, e: Exception) -> str:
    head = path.read_bytes()[:2] if path.is_file() else b""
    what = "a pickle (torch.save) renamed .safetensors" if head[:1] == b"\x80" or head == b"PK" else \
        "not a valid safetensors file (empty, truncated or another format)"
    return f"{path}: {what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def read_state_dict(path: str | Path, container: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Raw tensors (and safetensors metadata) from a checkpoint file, safely."""
    path = Path(path)
    _check_file(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        except Exception as e:
            raise CheckpointError(_bad_safetensors(path, e)) from None
    with open(path, "rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(path) and head[:1] != b"\x80":
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch's zip archive nor a pickle; "
                              f"a text file named {path.suffix}?)")
    try:
        # training checkpoints of DPAL/SAIP/SOLIDER hold their argparse.Namespace; nothing else is allowed
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused: the checkpoint is a pickle that needs arbitrary code to load "
            f"(torch.load weights_only=True failed: {str(e).splitlines()[0]}). Re-save it as plain tensors "
            "(torch.save(model.state_dict())) or as .safetensors."
        ) from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    return unwrap(obj, path, container), {}


def unwrap(obj, path: str | Path = "<checkpoint>", container: str | None = None) -> dict[str, torch.Tensor]:
    if container is not None and isinstance(obj, dict) and container in obj:
        obj = obj[container]
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
        raise CheckpointError(f"{path}: no tensors found (top-level keys: {sorted(map(str, obj))[:10]})")
    return tensors


def _is_flat_tensor_dict(d: dict) -> bool:
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


# --------------------------------------------------------------------------- loading
def load_into(
    model: nn.Module, path: str | Path, *, strict: bool = True, pos_grid: tuple[int, int] | None = None,
    container: str | None = None, pos_resize: str = "bicubic", pos_antialias: bool = False,
    architecture: str | None = None, card_layout: str = "auto", report_mismatch: bool = False,
) -> LoadReport:
    """Load a backbone checkpoint into a :class:`Backbone` (timm-wrapped or a release architecture)."""
    path = Path(path)
    target = getattr(model, "model", model)
    if container is None:
        rel = getattr(model, "release", None)
        container = getattr(rel, "container", None)
    raw, _meta = read_state_dict(path, container)
    sd, dropped, layout, remapped = prepare_state_dict(raw)
    report = LoadReport(path=str(path), sha256=file_sha256(path), dropped=dropped, remapped=remapped, layout=layout,
                        strict=strict)
    if architecture is not None:
        check_architecture(architecture, layout, card_layout, sd, path)
    if "sie_embed" in sd:
        raise CheckpointError(
            f"{path}: this TransReID checkpoint has a camera embedding (sie_embed {tuple(sd['sie_embed'].shape)}); "
            "it needs each image's camera id, which the backbone contract does not carry: not supported. "
            "Use a checkpoint trained without SIE (TransReID's SIE_CAMERA: False).")
    own = target.state_dict()
    heads = [k for k in sd if k not in own and any(re.match(p, k) for p in HEAD_PATTERNS)]
    report.dropped += heads
    sd = {k: v for k, v in sd.items() if k not in heads}

    if "pos_embed" in sd and "pos_embed" in own and sd["pos_embed"].shape != own["pos_embed"].shape:
        old = tuple(sd["pos_embed"].shape)
        if hasattr(model, "adapt_pos_embed"):
            sd["pos_embed"] = model.adapt_pos_embed(sd["pos_embed"], pos_grid)
        else:
            grid = tuple(target.patch_embed.grid_size)
            prefix = 0 if getattr(target, "no_embed_class", False) else int(getattr(target, "num_prefix_tokens", 1))
            sd["pos_embed"] = adapt_pos_embed(sd["pos_embed"], own["pos_embed"], prefix, grid, pos_grid,
                                              mode=pos_resize, antialias=pos_antialias)
        report.interpolated["pos_embed"] = (old, tuple(sd["pos_embed"].shape))

    mismatched = [k for k in sd if k in own and sd[k].shape != own[k].shape]
    if mismatched and report_mismatch:  # inspect: list them instead of failing
        report.mismatched = [f"{k}: {list(sd[k].shape)} vs model {list(own[k].shape)}" for k in mismatched]
        sd = {k: v for k, v in sd.items() if k not in mismatched}
    elif mismatched:
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
