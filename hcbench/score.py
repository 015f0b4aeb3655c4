"""``hcbench score``: metrics from prediction files on disk, through each family's evaluator.

:func:`score_family` is the whole library side of ``hcbench score <family>``: it finds the
registered family, resolves ``card`` (a card name or a card file, at ``tier``) and calls the
family evaluator's ``score_files`` — the same codec and metric code ``hcbench run`` and
``submit validate --rescore`` use. With a card every protocol option comes from the card (MPII
PCKh, CrowdPose crowd AP with its sigmas, CityPersons MR-2 setups, CrowdHuman clipping); the
result is a dict of fractions ready for ``json.dumps`` (undefined values become ``None``; -1
keeps its COCO meaning of "no ground truth in this setting"). Bad input raises an error naming
the file and, where there is one, the record.

``score_pose`` and the other ``score_<family>`` functions are short forms kept for callers of the
earlier API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hcbench.families.base import get_family


def score_family(family: str, pred: Path, gt: Path | None = None, card: str | None = None, tier: str = "full",
                 **options: Any) -> dict[str, Any]:
    """Score ``pred`` against ``gt`` with ``family``'s evaluator; ``card`` fixes the protocol."""
    fam = get_family(family)
    resolved = None
    if card is not None:
        from hcbench.cards import CardError, get_card, resolve

        resolved = resolve(get_card(card), tier)
        if resolved.family != fam.name:
            raise CardError(f"card {resolved.name!r} is a {resolved.family} card; use hcbench score {resolved.family}")
    return fam.get_evaluator().score_files(Path(pred), None if gt is None else Path(gt), resolved, **options)


def score_pose(gt: Path, pred: Path, sigmas: str | None = None, backend: str | None = None, crowd: bool = False,
               card: str | None = None) -> dict[str, Any]:
    """OKS AP/AR of COCO keypoint results against a COCO keypoint json (``crowd``: CrowdPose keys)."""
    return score_family("pose", pred, gt, card, sigmas=sigmas, backend=backend, crowd=crowd)


def score_parsing(gt: Path, pred: Path, num_classes: int | None = None, ignore_index: int | None = None,
                  card: str | None = None) -> dict[str, Any]:
    """mIoU etc. of the PNG label maps under ``pred`` against those under ``gt`` (same relative names)."""
    return score_family("parsing", pred, gt, card, num_classes=num_classes, ignore_index=ignore_index)


def score_reid(pred: Path, metric: str | None = None, card: str | None = None, gt: Path | None = None) -> dict[str, Any]:
    """mAP and CMC from a ReID features file (query/gallery features, pids and camids)."""
    return score_family("reid", pred, gt, card, metric=metric)


def score_attributes(gt: Path, pred: Path, threshold: float | None = None, card: str | None = None) -> dict[str, Any]:
    """mA and instance metrics of N x A scores ``pred`` against N x A {0,1} labels ``gt``."""
    return score_family("attributes", pred, gt, card, threshold=threshold)


def score_detection(gt: Path, pred: Path, sizes: Path | None = None, images: Path | None = None,
                    card: str | None = None) -> dict[str, Any]:
    """AP / MR-2 / JI (CrowdHuman protocol, boxes clipped to the image) against CrowdHuman ground truth."""
    return score_family("detection", pred, gt, card, sizes=sizes, images=images)


__all__ = ["score_family", "score_pose", "score_parsing", "score_reid", "score_attributes", "score_detection"]
