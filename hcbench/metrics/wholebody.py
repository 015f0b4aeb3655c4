"""COCO-WholeBody keypoint AP/AR per part, as the official evaluation reports it.

COCO-WholeBody (Jin et al., ECCV 2020) is scored with xtcocotools' ``COCOeval`` once per part --
``keypoints_body``, ``keypoints_foot``, ``keypoints_face``, ``keypoints_lefthand``,
``keypoints_righthand`` -- each with that part's OKS sigmas, and once for ``keypoints_wholebody``
(all 133 keypoints, all 133 sigmas), with ``use_area=True``. This module prepares, for each part,
the COCO keypoint evaluation that xtcocotools performs and runs it through
:func:`hcbench.metrics.pose.keypoint_ap`:

* ground truth: the part's keypoints; a person is ignored when it is a crowd or has no labelled
  keypoint *in that part* (xtcocotools counts ``v > 0`` of the part, not ``num_keypoints``);
  OKS scale = the person's ``area`` (``use_area``; else 0.53 x box area);
* detections: the part's keypoints; a detection whose part confidences are all 0 is dropped;
  the score is ``<part>_score`` when the result has one (``wholebody_score`` for the whole body),
  else ``score``; a detection's area -- which decides whether an *unmatched* detection counts in
  the medium/large ranges -- is the extent of its **body** keypoints (xtcocotools' ``loadRes``
  looks at ``keypoints`` only), passed as the result's box.

Results may give the keypoints as the COCO-WholeBody result layout (``keypoints`` = 17 body x 3
plus ``foot_kpts``, ``face_kpts``, ``lefthand_kpts``, ``righthand_kpts``) or as one flat list of
133 x 3 values in the card's order (``keypoints``), which hcbench's pose predictions file uses.

Metric keys: ``<part>_<stat>`` for part in :data:`PART_NAMES` and stat in ``AP AP50 AP75 APm APl
AR AR50 AR75 ARm ARl``; the whole-body stats also without prefix (``AP``, ``AR``, ...), as the
field reports "whole-body AP". Fractions in [0, 1]; -1 where a part has no evaluable person.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.types import DataFormatError

# (part, annotation key, keypoint count) in COCO-WholeBody's 133-keypoint order
PARTS: tuple[tuple[str, str, int], ...] = (
    ("body", "keypoints", 17), ("foot", "foot_kpts", 6), ("face", "face_kpts", 68),
    ("lefthand", "lefthand_kpts", 21), ("righthand", "righthand_kpts", 21),
)
PART_NAMES: tuple[str, ...] = (*(p for p, _, _ in PARTS), "wholebody")
STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# COCO-WholeBody's published sigmas (evaluation/myeval_wholebody.py), per part
SIGMAS: dict[str, tuple[float, ...]] = {
    "body": (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
             0.087, 0.089, 0.089),
    "foot": (0.068, 0.066, 0.066, 0.092, 0.094, 0.094),
    "face": (0.042, 0.043, 0.044, 0.043, 0.040, 0.035, 0.031, 0.025, 0.020, 0.023, 0.029, 0.032, 0.037, 0.038,
             0.043, 0.041, 0.045, 0.013, 0.012, 0.011, 0.011, 0.012, 0.012, 0.011, 0.011, 0.013, 0.015, 0.009,
             0.007, 0.007, 0.007, 0.012, 0.009, 0.008, 0.016, 0.010, 0.017, 0.011, 0.009, 0.011, 0.009, 0.007,
             0.013, 0.008, 0.011, 0.012, 0.010, 0.034, 0.008, 0.008, 0.009, 0.008, 0.008, 0.007, 0.010, 0.008,
             0.009, 0.009, 0.009, 0.007, 0.007, 0.008, 0.011, 0.008, 0.008, 0.008, 0.01, 0.008),
    "lefthand": (0.029, 0.022, 0.035, 0.037, 0.047, 0.026, 0.025, 0.024, 0.035, 0.018, 0.024, 0.022, 0.026,
                 0.017, 0.021, 0.021, 0.032, 0.02, 0.019, 0.022, 0.031),
}
SIGMAS["righthand"] = SIGMAS["lefthand"]
WHOLEBODY_SIGMAS: tuple[float, ...] = tuple(s for p, _, _ in PARTS for s in SIGMAS[p])
SIGMAS["wholebody"] = WHOLEBODY_SIGMAS
NUM_KEYPOINTS = len(WHOLEBODY_SIGMAS)  # 133

_SLICES: dict[str, slice] = {}
_s = 0
for _p, _k, _n in PARTS:
    _SLICES[_p] = slice(_s, _s + _n)
    _s += _n
_SLICES["wholebody"] = slice(0, _s)


def _load(gt: Mapping[str, Any] | str | Path) -> tuple[dict, str | Path]:
    if isinstance(gt, (str, Path)):
        try:
            return json.loads(Path(gt).read_text(encoding="utf-8")), gt
        except json.JSONDecodeError as e:
            raise DataFormatError(gt, f"not valid JSON: {e}") from None
    return dict(gt), "<gt>"


def _gt_parts(data: dict, source: str | Path) -> np.ndarray:
    """(N, 133, 3) ground-truth keypoints of every annotation, checked."""
    anns = data.get("annotations")
    if not isinstance(anns, list) or not isinstance(data.get("images"), list):
        raise DataFormatError(source, "expected a COCO-WholeBody object with 'images' and 'annotations' lists")
    out = np.zeros((len(anns), NUM_KEYPOINTS, 3))
    for i, ann in enumerate(anns):
        where = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
        for part, key, n in PARTS:
            v = ann.get(key) if isinstance(ann, dict) else None
            if not isinstance(v, list) or len(v) != 3 * n:
                got = f"{len(v)} values" if isinstance(v, list) else "missing"
                raise DataFormatError(source, f"'{key}' {got}; a COCO-WholeBody annotation needs {3 * n}",
                                      record=where)
            out[i, _SLICES[part]] = np.asarray(v, dtype=np.float64).reshape(n, 3)
    return out


def _result_parts(r: Mapping[str, Any], i: int, source: str | Path) -> np.ndarray:
    """(133, 3) keypoints of one result, from the split layout or one flat 133 x 3 list."""
    kp = r.get("keypoints")
    if not isinstance(kp, (list, tuple)):
        raise DataFormatError(source, "result has no 'keypoints' list", record=i)
    try:
        if len(kp) == 3 * NUM_KEYPOINTS:
            return np.asarray(kp, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        if len(kp) == 3 * 17 and all(key in r for _, key, _ in PARTS[1:]):
            return np.concatenate([np.asarray(r[key], dtype=np.float64).reshape(n, 3) for _, key, n in PARTS])
    except (TypeError, ValueError):
        raise DataFormatError(source, "keypoints must be numbers", record=i) from None
    raise DataFormatError(source, f"{len(kp)} keypoint values: a whole-body result holds {3 * NUM_KEYPOINTS} "
                          "(133 x 3) or 51 body values plus foot_kpts, face_kpts, lefthand_kpts, righthand_kpts",
                          record=i)


def _score_key(part: str) -> str:
    return "wholebody_score" if part == "wholebody" else f"{part}_score"


def part_inputs(data: dict, results: Sequence[Mapping[str, Any]], part: str, *, source: str | Path = "<gt>",
                result_source: str | Path = "<results>") -> tuple[dict, list[dict]]:
    """The COCO keypoint ground truth and results that xtcocotools evaluates for ``part``."""
    if part not in _SLICES:
        raise ValueError(f"unknown part {part!r}; one of {PART_NAMES}")
    sl = _SLICES[part]
    gt_kp = _gt_parts(data, source)[:, sl]
    k = gt_kp.shape[1]
    cats = []
    for c in data.get("categories", []):
        c = copy.deepcopy(c)
        c["keypoints"] = [f"{part}_{j}" for j in range(k)]
        c.pop("skeleton", None)
        cats.append(c)
    anns = []
    for ann, kp in zip(data["annotations"], gt_kp, strict=True):
        a = {key: v for key, v in ann.items() if key not in {p_key for _, p_key, _ in PARTS} and key != "segmentation"}
        a["keypoints"] = kp.reshape(-1).tolist()
        a["num_keypoints"] = int(np.count_nonzero(kp[:, 2] > 0))  # the part's labelled keypoints
        a.setdefault("iscrowd", 0)
        anns.append(a)
    gt_part = {"images": list(data["images"]), "annotations": anns, "categories": cats}
    dets = []
    for i, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise DataFormatError(result_source, "result is not an object", record=i)
        full = _result_parts(r, i, result_source)
        kp = full[sl]
        if not np.count_nonzero(kp[:, 2] > 0):
            continue  # xtcocotools drops a detection without a confident keypoint in the part
        body = full[:17]
        x0, y0 = float(body[:, 0].min()), float(body[:, 1].min())
        box = [x0, y0, float(body[:, 0].max()) - x0, float(body[:, 1].max()) - y0]
        dets.append({"image_id": r.get("image_id"), "category_id": r.get("category_id"),
                     "keypoints": kp.reshape(-1).tolist(), "score": float(r.get(_score_key(part), r.get("score"))),
                     "bbox": box})
    return gt_part, dets


def wholebody_ap(gt: Mapping[str, Any] | str | Path, results: Sequence[Mapping[str, Any]], *,
                 parts: Sequence[str] = PART_NAMES, use_area: bool = True, backend: str | None = None,
                 source: str | Path | None = None) -> dict[str, float]:
    """Per-part OKS AP/AR of whole-body ``results`` against a COCO-WholeBody ground truth (a dict
    in the ``coco_wholebody_*_v1.0.json`` layout, or its path). See the module docstring.
    ``backend``: :func:`hcbench.metrics.pose.keypoint_ap`'s (its default when None)."""
    from hcbench.metrics.pose import keypoint_ap

    data, src = _load(gt)
    src = source or src
    if not isinstance(results, (list, tuple)):
        raise DataFormatError("<results>", "expected a JSON list of whole-body keypoint results")
    out: dict[str, float] = {}
    for part in parts:
        gt_part, dets = part_inputs(data, results, part, source=src)
        kw = {} if backend is None else {"backend": backend}
        stats = keypoint_ap(gt_part, dets, sigmas=SIGMAS[part], use_area=use_area, **kw)
        for key in STATS:
            out[f"{part}_{key}"] = float(stats[key])
            if part == "wholebody":
                out[key] = float(stats[key])
    return out
