"""COCO-WholeBody v1.0 keypoint files (``coco_wholebody_{train,val}_v1.0.json``).

Each person annotation of the real files carries, besides COCO's ``keypoints`` (17 x 3),
``foot_kpts`` (6 x 3), ``face_kpts`` (68 x 3), ``lefthand_kpts`` and ``righthand_kpts`` (21 x 3
each), the part boxes ``face_box``/``lefthand_box``/``righthand_box`` ([x, y, w, h]) and the
flags ``face_valid``/``lefthand_valid``/``righthand_valid``/``foot_valid``; ``num_keypoints``
counts the body keypoints only, and the person category lists the 17 body names. The reader
concatenates the parts in that order into 133 keypoints (the dataset card's order) and reads
instances like :mod:`hcbench.data.readers.coco`; evaluation reads the original file
(``extra["coco_gt"]``) with :func:`hcbench.metrics.wholebody.wholebody_ap`.

Card roles (format ``coco_wholebody``): ``annotations`` and ``images``, as ``coco_keypoints``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers.coco import (
    PERSON_CATEGORY_ID,
    CocoKeypointIndex,
    _split_file,
    _split_from_index,
    load_json,
)
from hcbench.data.types import DataFormatError, DatasetSplit, KeypointMeta, PoseInstance
from hcbench.registry import DATASETS

# (part name, annotation key, number of keypoints), in the 133-keypoint order
PARTS: tuple[tuple[str, str, int], ...] = (
    ("body", "keypoints", 17), ("foot", "foot_kpts", 6), ("face", "face_kpts", 68),
    ("lefthand", "lefthand_kpts", 21), ("righthand", "righthand_kpts", 21),
)
NUM_KEYPOINTS = sum(n for _, _, n in PARTS)
# part -> (start, stop) in the 133-keypoint order
PART_SLICES: dict[str, tuple[int, int]] = {}
_start = 0
for _name, _key, _n in PARTS:
    PART_SLICES[_name] = (_start, _start + _n)
    _start += _n
PART_BOXES = {"face": "face_box", "lefthand": "lefthand_box", "righthand": "righthand_box"}
PART_VALID = {"foot": "foot_valid", "face": "face_valid", "lefthand": "lefthand_valid",
              "righthand": "righthand_valid"}


def _record(ann: Any, i: int) -> str:
    return f"annotation id={ann['id']}" if isinstance(ann, dict) and "id" in ann else f"annotation #{i}"


def check_parts(doc: Any, path: Path) -> None:
    """Every person annotation holds the five keypoint arrays with the right lengths."""
    if not isinstance(doc, dict) or not isinstance(doc.get("annotations"), list):
        raise DataFormatError(path, "expected a COCO-WholeBody object with an 'annotations' list")
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            raise DataFormatError(path, "annotation is not an object", record=f"annotation #{i}")
        for _, key, n in PARTS:
            v = ann.get(key)
            if not isinstance(v, list):
                raise DataFormatError(path, f"no '{key}' list: a COCO-WholeBody annotation needs keypoints, "
                                      "foot_kpts, face_kpts, lefthand_kpts and righthand_kpts", record=_record(ann, i))
            if len(v) != 3 * n:
                raise DataFormatError(path, f"'{key}' has {len(v)} values, expected {3 * n} ({n} keypoints x 3)",
                                      record=_record(ann, i))


def to_flat_doc(doc: dict, path: Path, names: Sequence[str]) -> dict:
    """The file as a 133-keypoint COCO keypoint object (parts concatenated; other keys kept)."""
    check_parts(doc, path)
    anns = []
    for ann in doc["annotations"]:
        flat = [v for _, key, _ in PARTS for v in ann[key]]
        anns.append({**ann, "keypoints": flat})
    cats = []
    for c in doc.get("categories", []):
        c = dict(c) if isinstance(c, dict) else c
        if isinstance(c, dict) and "keypoints" in c:
            c["keypoints"] = list(names)
        cats.append(c)
    return {**doc, "annotations": anns, "categories": cats}


def read_wholebody_index(ann_file: Path, meta: KeypointMeta) -> CocoKeypointIndex:
    if meta.num_keypoints != NUM_KEYPOINTS:
        raise ValueError(f"dataset {meta.name!r}: COCO-WholeBody needs {NUM_KEYPOINTS} keypoints in the card, "
                         f"it lists {meta.num_keypoints}")
    doc = load_json(ann_file)
    return CocoKeypointIndex(to_flat_doc(doc, ann_file, meta.keypoint_names), ann_file, NUM_KEYPOINTS)


@DATASETS.register("coco_wholebody")
def read(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit[PoseInstance]:
    """Ground-truth-box instances with 133 keypoints; ``extra["coco_gt"]`` is the original file and
    ``extra["wholebody"]`` is True (the evaluator scores per part)."""
    meta = card.meta()
    assert isinstance(meta, KeypointMeta)
    ann = _split_file(Path(root), card, split, "annotations")
    images = _split_file(Path(root), card, split, "images")
    assert ann is not None and images is not None
    index = read_wholebody_index(ann, meta)
    out = _split_from_index(index, images, meta, name=card.name, split=split, limit=limit)
    out.extra["wholebody"] = True
    return out


def _part_box(kp: np.ndarray) -> list[float]:
    vis = kp[:, 2] > 0
    if not vis.any():
        return [0.0, 0.0, 0.0, 0.0]
    lo, hi = kp[vis, :2].min(0), kp[vis, :2].max(0)
    return [round(float(lo[0]), 2), round(float(lo[1]), 2), round(float(hi[0] - lo[0]), 2),
            round(float(hi[1] - lo[1]), 2)]


def _flat(a: np.ndarray) -> list:
    return [int(v) if float(v).is_integer() else float(v) for v in np.asarray(a, np.float64).reshape(-1).tolist()]


def write_coco_wholebody(path: str | Path, images: Sequence[dict], annotations: Sequence[dict], meta: KeypointMeta,
                         *, info: dict | None = None) -> Path:
    """Write a COCO-WholeBody v1.0 file, atomically. ``annotations`` carry ``keypoints`` as a
    (133, 3) array (or 399 values) plus ``image_id``, ``bbox`` and optionally ``id``, ``area``,
    ``iscrowd``; the parts, part boxes (extent of the labelled part keypoints), ``*_valid``
    flags and ``num_keypoints`` (body) are derived as in the real files. The result is read
    back by :func:`read_wholebody_index` before it is written."""
    from hcbench.io import atomic_write_text

    path = Path(path)
    anns = []
    for i, a in enumerate(annotations):
        kp = np.asarray(a["keypoints"], np.float64).reshape(NUM_KEYPOINTS, 3)
        out = {k: v for k, v in a.items() if k != "keypoints"}
        out.setdefault("id", i + 1)
        out.setdefault("category_id", PERSON_CATEGORY_ID)
        out.setdefault("iscrowd", 0)
        out["bbox"] = [float(v) for v in np.asarray(a["bbox"], np.float64).reshape(-1).tolist()]
        out.setdefault("area", out["bbox"][2] * out["bbox"][3])
        for name, key, _ in PARTS:
            s, e = PART_SLICES[name]
            out[key] = _flat(kp[s:e])
            if name in PART_BOXES:
                out[PART_BOXES[name]] = _part_box(kp[s:e])
            if name in PART_VALID:
                out[PART_VALID[name]] = bool((kp[s:e, 2] > 0).any())
        out["num_keypoints"] = int((kp[:17, 2] > 0).sum())
        anns.append(out)
    body = list(meta.keypoint_names[:17])
    doc = {
        "info": info or {"description": f"{meta.name} (COCO-WholeBody v1.0 layout) written by hcbench"},
        "licenses": [], "images": [dict(im) for im in images], "annotations": anns,
        "categories": [{"supercategory": "person", "id": PERSON_CATEGORY_ID, "name": "person", "keypoints": body,
                        "skeleton": [[a + 1, b + 1] for a, b in meta.skeleton if a < 17 and b < 17]}],
    }
    CocoKeypointIndex(to_flat_doc(doc, path, meta.keypoint_names), path, NUM_KEYPOINTS)  # validate first
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
    return path
