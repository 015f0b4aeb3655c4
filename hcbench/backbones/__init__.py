"""Backbone specs -> :class:`Backbone` modules with one feature interface.

Spec strings:

* a registered alias or plugin name: ``vit_tiny``, ``vit_small``, ``vit_base``, ``resnet50``;
* ``timm:<name>``: any timm model, randomly initialised (nothing is downloaded);
* ``file:<path>``: a ``.safetensors``/``.pth`` checkpoint with a sidecar card
  ``<path>.yaml`` (or safetensors metadata) naming the architecture;
* ``student:<name>``: a student exported by ``hcbench pretrain`` (``$HCBENCH_STUDENTS`` or
  ``./students``).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hcbench.backbones.features import Backbone, Features, FeatureSpec
from hcbench.registry import BACKBONES


class BackboneSpecError(ValueError):
    pass


def students_dir() -> Path:
    return Path(os.environ.get("HCBENCH_STUDENTS", "students"))


def _sidecar(path: Path) -> dict:
    for cand in (path.with_name(path.name + ".yaml"), path.with_suffix(".yaml"), path.parent / "card.yaml"):
        if cand.exists():
            data = yaml.safe_load(cand.read_text()) or {}
            if not isinstance(data, dict) or "architecture" not in data:
                raise BackboneSpecError(f"{cand}: a backbone card needs an 'architecture' field (e.g. vit_tiny)")
            return data
    if path.suffix == ".safetensors" and path.exists():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "hcbench.architecture" in meta:
            return {"architecture": meta["hcbench.architecture"]}
    raise BackboneSpecError(
        f"{path}: no card says which architecture these weights belong to; write {path.name}.yaml "
        "beside it with e.g. 'architecture: vit_tiny' (or 'timm:vit_small_patch16_224')"
    )


def build_backbone(spec: str, img_size: tuple[int, int] = (256, 192), *, strict: bool = True) -> Backbone:
    """Build the backbone named by ``spec`` for inputs of ``img_size`` (H, W)."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "timm":
        from hcbench.backbones.timm_backbone import TimmBackbone

        model = TimmBackbone(rest, img_size=img_size)
    elif sep and kind in ("file", "student"):
        if kind == "file":
            path = Path(rest).expanduser()
            card = _sidecar(path)
        else:
            folder = students_dir() / rest
            path = folder / "backbone.safetensors"
            if not path.exists():
                known = sorted(p.name for p in students_dir().glob("*")) if students_dir().exists() else []
                raise BackboneSpecError(f"student {rest!r} not found at {path}; known students: {known or 'none'}")
            card = _sidecar(path)
        arch = str(card["architecture"])
        if arch.startswith(("file:", "student:")):
            raise BackboneSpecError(f"{path}: architecture must be an alias or timm:<name>, not {arch!r}")
        from hcbench.backbones.checkpoint import load_into

        model = build_backbone(arch, img_size)
        grid = tuple(card["pos_grid"]) if card.get("pos_grid") else None
        model.load_report = load_into(model, path, strict=bool(card.get("strict", strict)), pos_grid=grid)
    elif spec in BACKBONES:
        model = BACKBONES.get(spec)(img_size=img_size)
    else:
        BACKBONES.entry(spec)  # raises with a suggestion
        raise AssertionError("unreachable")
    model.spec = spec
    return model


__all__ = ["Backbone", "Features", "FeatureSpec", "build_backbone", "BackboneSpecError", "students_dir"]
