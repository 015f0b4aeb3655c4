"""Backbone specs -> :class:`Backbone` modules with one feature interface.

Spec strings:

* a registered alias or plugin name: ``vit_tiny``, ``vit_small``, ``vit_base``, ``resnet50``, or a
  released architecture (:mod:`hcbench.backbones.releases`: ``dpal_vit_tiny``, ``path_vit_base``,
  ``solider_swin_tiny``, ``vitpose_vit_base``, ``sapiens_0.3b`` ...);
* ``timm:<name>``: any timm model, randomly initialised (nothing is downloaded);
* ``file:<path>``: a ``.safetensors``/``.pth`` checkpoint with a sidecar card
  ``<path>.yaml`` (or safetensors metadata) naming the architecture, validated by
  :class:`hcbench.backbones.card.BackboneCard` (architecture parameters, mean/std, key layout);
* ``student:<name>``: a student exported by ``hcbench pretrain`` (``$HCBENCH_STUDENTS`` or
  ``./students``).
"""

from __future__ import annotations

import os
from pathlib import Path

from hcbench.backbones.features import Backbone, Features, FeatureSpec
from hcbench.errors import UserError
from hcbench.registry import BACKBONES


class BackboneSpecError(UserError, ValueError):
    pass


def students_dir() -> Path:
    return Path(os.environ.get("HCBENCH_STUDENTS", "students"))


def _card(path: Path):
    """The backbone card of a checkpoint (sidecar YAML, else safetensors metadata), validated."""
    from hcbench.backbones.card import find_card
    from hcbench.backbones.checkpoint import CheckpointNotFoundError, read_state_dict

    if not path.exists():
        raise CheckpointNotFoundError(f"{path}: no such checkpoint file")
    if path.is_dir():
        read_state_dict(path)  # raises "is a folder", naming the weights inside
    card = find_card(path)
    if card is None:
        raise BackboneSpecError(
            f"{path}: no card says which architecture these weights belong to; write {path.name}.yaml "
            "beside it with e.g. 'architecture: vit_tiny' (or a release: dpal_vit_tiny, path_vit_base, ...; "
            "`hcbench inspect` suggests one)"
        )
    return card


def _sidecar(path: Path) -> dict:
    """The card as a plain dict (kept for callers that only need ``architecture``)."""
    return _card(path).model_dump(exclude_none=True)


def build_backbone(spec: str, img_size: tuple[int, int] = (256, 192), *, strict: bool = True) -> Backbone:
    """Build the backbone named by ``spec`` for inputs of ``img_size`` (H, W).

    A ``file:``/``student:`` checkpoint is loaded as its card says; the load report (loaded /
    dropped / missing / unexpected / resampled) is ``model.load_report``.
    """
    kind, sep, rest = spec.partition(":")
    if sep and kind == "timm":
        from hcbench.backbones.timm_backbone import TimmBackbone

        model = TimmBackbone(rest, img_size=img_size)
    elif sep and kind in ("file", "student"):
        if kind == "file":
            path = Path(rest).expanduser()
        else:
            folder = students_dir() / rest
            path = folder / "backbone.safetensors"
            if not path.exists():
                known = sorted(p.name for p in students_dir().glob("*")) if students_dir().exists() else []
                raise BackboneSpecError(f"student {rest!r} not found at {path}; known students: {known or 'none'}")
        card = _card(path)
        model = build_from_card(card, img_size, where=str(path))
        from hcbench.backbones.checkpoint import load_into

        pe = card.pos_embed
        model.load_report = load_into(
            model, path, strict=bool(card.strict and strict), pos_grid=card.checkpoint_grid,
            container=card.container, pos_resize=pe.resize if pe else "bicubic",
            pos_antialias=pe.antialias if pe else False, architecture=card.architecture, card_layout=card.layout)
        if not model.load_report.complete:  # strict: false loaded a partial checkpoint: never silently
            import warnings

            from hcbench.backbones.checkpoint import PartialLoadWarning

            warnings.warn(f"partial backbone load (strict: false): {model.load_report.summary()}",
                          PartialLoadWarning, stacklevel=2)
    elif spec in BACKBONES:
        model = BACKBONES.get(spec)(img_size=img_size)
    else:
        BACKBONES.entry(spec)  # raises with a suggestion
        raise AssertionError("unreachable")
    model.spec = spec
    return model


def build_from_card(card, img_size: tuple[int, int], where: str = "<card>") -> Backbone:
    """A randomly initialised backbone as a card describes it (architecture + overrides + statistics)."""
    arch = card.architecture
    if arch.startswith(("file:", "student:")):
        raise BackboneSpecError(f"{where}: architecture must be an alias, a release or timm:<name>, not {arch!r}")
    overrides = card.overrides()
    if arch.startswith("timm:") or arch not in BACKBONES or not BACKBONES.entry(arch).meta.get("release"):
        if overrides:
            raise BackboneSpecError(
                f"{where}: {arch!r} is not a configurable release architecture, so the card cannot set "
                f"{sorted(overrides)}; name a release (dpal_vit_tiny, path_vit_base, vitpose_vit_base, ...)")
        model = build_backbone(arch, img_size)
    else:
        try:
            model = BACKBONES.get(arch)(img_size=img_size, **overrides)
        except (TypeError, ValueError) as e:
            raise BackboneSpecError(f"{where}: the card's architecture parameters do not build: {e}") from None
    if card.mean is not None or card.std is not None:
        model.set_normalization(card.mean or model.mean, card.std or model.std)
    return model


__all__ = ["Backbone", "Features", "FeatureSpec", "build_backbone", "build_from_card", "BackboneSpecError",
           "students_dir"]
