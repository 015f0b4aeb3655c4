"""The CrowdHuman evaluation as hcbench computed it before its vectorised rewrite: one detection at a
time for the greedy matching, the IoU matrix recomputed per JI threshold, a full-matrix assignment.
Kept as the independent loop the fast path is checked against (tests and benchmarks/det_eval.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hcbench.metrics.detection import CROWDHUMAN_FPPI_REF, _dets, _images  # input parsing only

_JI_EPS = 1e-6


def _xyxy(b: np.ndarray) -> np.ndarray:
    out = b[:, :4].copy()
    out[:, 2:4] += out[:, :2]
    return out


def _clip(b: np.ndarray, width: int, height: int) -> np.ndarray:
    if width <= 0 or height <= 0 or len(b) == 0:
        return b
    b = b.copy()  # the toolkit's clip_all_boader
    b[:, 0] = np.minimum(np.maximum(b[:, 0], 0), width - 1)
    b[:, 1] = np.minimum(np.maximum(b[:, 1], 0), height - 1)
    b[:, 2] = np.maximum(np.minimum(b[:, 2], width), 0)
    b[:, 3] = np.maximum(np.minimum(b[:, 3], height), 0)
    return b


def _overlaps(d: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection / area of d) between [x1,y1,x2,y2] rows of d and g."""
    iw = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    da = ((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]))[:, None]
    ga = ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]))[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(inter / (da + ga - inter))
        ioa = np.nan_to_num(inter / da)
    return iou, ioa


def _crowdhuman_match(dt: np.ndarray, persons: np.ndarray, ignores: np.ndarray, thr: float) -> np.ndarray:
    """Per detection (already sorted by score): 1 TP, 0 FP, -1 dropped on an ignore region."""
    label = np.zeros(len(dt), dtype=np.int64)
    if len(dt) == 0:
        return label
    iou_p, _ = _overlaps(dt, persons) if len(persons) else (np.zeros((len(dt), 0)), None)
    _, ioa_i = _overlaps(dt, ignores) if len(ignores) else (None, np.zeros((len(dt), 0)))
    matched = np.zeros(len(persons), dtype=bool)
    for i in range(len(dt)):
        cand = np.where(matched, -1.0, iou_p[i])
        j = int(np.argmax(cand)) if len(cand) else -1
        if j >= 0 and cand[j] > thr:
            matched[j] = True
            label[i] = 1
        elif (ioa_i[i] > thr).any():
            label[i] = -1
    return label


def _ji_image(dt: np.ndarray, persons: np.ndarray, ignores: np.ndarray, thr: float) -> tuple[float, int, int]:
    from scipy.optimize import linear_sum_assignment

    k = 0
    dt_left = np.ones(len(dt), dtype=bool)
    gt_left = np.ones(len(persons), dtype=bool)
    if len(dt) and len(persons):
        iou, _ = _overlaps(dt, persons)
        w = np.where(iou > thr, iou, 0.0)
        # maximum-weight matching (CrowdDet's maxWeightMatching); zero-weight pairs are no edge
        rows, cols = linear_sum_assignment(w, maximize=True)
        ok = w[rows, cols] > 0
        k = int(ok.sum())
        dt_left[rows[ok]] = False
        gt_left[cols[ok]] = False
    ign_dt = ign_gt = 0
    if len(ignores):
        if dt_left.any():
            ign_dt = int((_overlaps(dt[dt_left], ignores)[1].max(1) > thr).sum())
        if gt_left.any():
            ign_gt = int((_overlaps(persons[gt_left], ignores)[1].max(1) > thr).sum())
    m = len(persons) - ign_gt
    n = len(dt) - ign_dt
    return k / (m + n - k + _JI_EPS), m, n


def crowdhuman_eval_reference(gts: Sequence[Any], dets: Mapping[Any, Any], iou: float = 0.5) -> dict[str, float]:
    """AP, MR-2 and JI of ``dets`` (image id -> (K, 5) [x, y, w, h, score]) on ``gts``.

    ``gts`` are :class:`hcbench.data.types.DetectionSample` (or dicts/objects with ``image_id``,
    ``boxes`` (N, 4) full boxes, ``ignore`` (M, 4), optional ``width``/``height``), all [x, y, w, h].
    Images of ``gts`` without detections count as images with none.
    """
    images = _images(gts)
    det_map = _dets(dets, images)
    labels, scores = [], []
    n_gt = 0
    per_image = []
    for im in images:
        persons = _clip(_xyxy(im.full_xywh), im.width, im.height)
        ignores = _clip(_xyxy(im.ignore_xywh), im.width, im.height)
        d = det_map.get(im.image_id, np.zeros((0, 5)))
        d = d[np.argsort(-d[:, 4], kind="stable")]
        dxy = _clip(_xyxy(d), im.width, im.height)
        lab = _crowdhuman_match(dxy, persons, ignores, iou)
        keep = lab >= 0
        labels.append(lab[keep])
        scores.append(d[keep, 4])
        n_gt += len(persons)
        per_image.append((dxy, d[:, 4], persons, ignores))
    if n_gt == 0:
        return {"AP": -1.0, "MR-2": -1.0, "JI": -1.0}
    lab = np.concatenate(labels)
    sc = np.concatenate(scores)
    lab = lab[np.argsort(-sc, kind="stable")]
    tp = np.cumsum(lab == 1)
    fp = np.cumsum(lab == 0)
    recall = tp / n_gt
    precision = tp / np.maximum(tp + fp, 1)
    ap = float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2)) if len(lab) > 1 else 0.0

    if len(lab) == 0:
        mr = 1.0
    else:
        fppi = fp / len(images)
        idx = [int(np.argmax(fppi >= r)) if (fppi >= r).any() else len(fppi) - 1 for r in CROWDHUMAN_FPPI_REF]
        miss = 1.0 - recall[idx]
        with np.errstate(divide="ignore"):
            mr = float(np.exp(np.mean(np.log(miss))))

    best_ji = 0.0
    for t in range(10):
        thr = 0.1 * t
        total, counted = 0.0, 0
        for dxy, s, persons, ignores in per_image:
            ratio, m, n = _ji_image(dxy[s > thr], persons, ignores, iou)
            total += ratio
            counted += (m != 0 or n != 0)
        best_ji = max(best_ji, total / counted if counted else 0.0)
    return {"AP": ap, "MR-2": mr, "JI": float(best_ji)}
