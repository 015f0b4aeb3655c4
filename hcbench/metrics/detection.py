"""Pedestrian-detection metrics: the CrowdHuman protocol (AP@0.5, MR⁻², JI) and CityPersons MR⁻².

CrowdHuman follows the toolkit released with CrowdDet (Purkialo/CrowdDet ``lib/evaluate``, ported
as mmdet's ``CrowdHumanMetric``), full-body boxes, IoU 0.5:

* boxes are clipped to the image when its size is known (``width``/``height`` > 0);
* matching per image ("Caltech" rule): detections by descending score; each takes the unmatched
  ground-truth person of largest IoU, counting only IoU > 0.5; failing that, a detection whose
  intersection over *its own* area with an ignore region is > 0.5 is dropped (neither TP nor FP);
  ignore regions can absorb any number of detections;
* all images' detections are pooled and sorted by score; AP is the trapezoid area under the
  (recall, precision) points of that list, from the first detection on (so perfect detections
  of N boxes give (N-1)/N, exactly as the toolkit computes it);
* MR⁻²: at each FPPI reference point (the toolkit's 0.0100 0.0178 0.0316 0.0562 0.1000 0.1778
  0.3162 0.5623 1.000) the miss rate at the first detection whose FPPI reaches it (the last one
  when none does); the geometric mean of those 9 miss rates;
* JI: for score thresholds 0.0, 0.1, ..., 0.9 (detections with score > thr), per image a
  maximum-weight one-to-one matching on IoU > 0.5; unmatched detections / ground truths whose IoA
  with an ignore region is > 0.5 are not counted; Jaccard = k / (m + n - k + 1e-6); the mean over
  images with m + n > 0; JI is the best threshold's mean.

CityPersons follows the official ``eval_MR_multisetup.py`` (cvgroup-njust/CityPersons): a
pedestrian (class 1) outside the setup's height/visibility ranges, and every box of another class,
becomes an ignore region matched by IoA; detections outside [h_min / 1.25, h_max * 1.25) are
dropped; at most 1000 detections per image; recall at the last point with FPPI <= each reference
point. (Where even the first detection exceeds a reference point the official code reads the final
recall through a negative index; here the miss rate there is 1, what the definition says. The two
agree whenever the split has >= 100 images or the top detection is a true positive.)

All metrics are fractions (MR⁻² in [0, 1], lower is better). A setting without ground truth gives
-1, as the reference code does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CROWDHUMAN_FPPI_REF = (0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000)
CITYPERSONS_FPPI_REF = (0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000)
_JI_EPS = 1e-6
_BIG = 1e5 ** 2  # the official "no upper bound"

# setup -> ((height min, height max), (visibility min, visibility max)), bounds inclusive
CITYPERSONS_SETUPS: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "reasonable": ((50, _BIG), (0.65, _BIG)),
    "small": ((50, 75), (0.65, _BIG)),  # official "Reasonable_small"
    "heavy": ((50, _BIG), (0.2, 0.65)),  # official "Reasonable_occ=heavy"
    "all": ((20, _BIG), (0.2, _BIG)),
    "partial": ((50, _BIG), (0.65, 0.9)),  # extended setups used in later CityPersons papers
    "bare": ((50, _BIG), (0.9, _BIG)),
}
_SETUP_ALIASES = {"reasonable_small": "small", "reasonable_occ=heavy": "heavy"}


# --------------------------------------------------------------------------- inputs
def _field(g: Any, name: str, default: Any = None) -> Any:
    if isinstance(g, Mapping):
        return g.get(name, default)
    return getattr(g, name, default)


def _boxes(x: Any, cols: int, what: str) -> np.ndarray:
    a = np.zeros((0, cols)) if x is None else np.asarray(x, dtype=np.float64)
    if a.size == 0:
        return np.zeros((0, cols))
    if a.ndim != 2 or a.shape[1] != cols:
        raise ValueError(f"{what} must be (n, {cols}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"NaN or inf in {what}")
    return a


class _Image:
    """One image's ground truth in [x1, y1, x2, y2]: persons (with full/visible boxes) and ignores."""

    def __init__(self, g: Any):
        self.image_id = _field(g, "image_id", _field(g, "id"))
        if self.image_id is None:
            raise ValueError("ground-truth record without image_id")
        where = f"ground truth of image {self.image_id!r}"
        boxes = _boxes(_field(g, "boxes"), 4, f"{where}: boxes")
        vis = _field(g, "visible")
        vis = boxes.copy() if vis is None else _boxes(vis, 4, f"{where}: visible")
        if len(vis) != len(boxes):
            raise ValueError(f"{where}: {len(vis)} visible boxes for {len(boxes)} boxes")
        labels = _field(g, "labels")
        labels = np.ones(len(boxes), dtype=np.int64) if labels is None else np.asarray(labels).reshape(-1)
        if len(labels) != len(boxes):
            raise ValueError(f"{where}: {len(labels)} labels for {len(boxes)} boxes")
        person = labels == 1  # CityPersons: 0 ignore region, 1 pedestrian, 2-5 rider/sitting/other/group
        self.full_xywh = boxes[person]
        self.vis_xywh = vis[person]
        self.ignore_xywh = np.concatenate([_boxes(_field(g, "ignore"), 4, f"{where}: ignore"), boxes[~person]])
        self.width = int(_field(g, "width", 0) or 0)
        self.height = int(_field(g, "height", 0) or 0)


def _images(gts: Sequence[Any]) -> list[_Image]:
    images = [_Image(g) for g in gts]
    ids = [im.image_id for im in images]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"image id {dup!r} appears twice in the ground truth")
    return images


def _dets(dets: Mapping[Any, Any], images: list[_Image]) -> dict[Any, np.ndarray]:
    known = {im.image_id for im in images}
    out = {}
    for k, v in dets.items():
        if k not in known:
            raise ValueError(f"detections for unknown image id {k!r}")
        out[k] = _boxes(v, 5, f"detections of image {k!r}")
    return out


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


# --------------------------------------------------------------------------- CrowdHuman
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


def crowdhuman_eval(gts: Sequence[Any], dets: Mapping[Any, Any], iou: float = 0.5) -> dict[str, float]:
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


# --------------------------------------------------------------------------- CityPersons
def citypersons_mr(gts: Sequence[Any], dets: Mapping[Any, Any], setup: str = "reasonable",
                   iou: float = 0.5, max_dets: int = 1000) -> dict[str, float]:
    """Log-average miss rate (``"MR-2"``) of ``dets`` on ``gts`` under a CityPersons ``setup``.

    ``setup`` is one of :data:`CITYPERSONS_SETUPS` (case-insensitive; the official labels
    ``Reasonable_small`` / ``Reasonable_occ=heavy`` are accepted). Ground truth as in
    :func:`crowdhuman_eval`, plus ``visible`` boxes and ``labels`` (only class 1 counts).
    """
    key = _SETUP_ALIASES.get(setup.lower(), setup.lower())
    if key not in CITYPERSONS_SETUPS:
        raise ValueError(f"unknown setup {setup!r}; choose one of {sorted(CITYPERSONS_SETUPS)}")
    (h0, h1), (v0, v1) = CITYPERSONS_SETUPS[key]
    images = _images(gts)
    det_map = _dets(dets, images)
    thr = min(iou, 1 - 1e-10)
    all_scores, all_tp, all_ign = [], [], []
    npig = 0
    for im in images:
        full = im.full_xywh
        h = full[:, 3]
        with np.errstate(divide="ignore", invalid="ignore"):
            vis = np.nan_to_num(im.vis_xywh[:, 2] * im.vis_xywh[:, 3] / (full[:, 2] * full[:, 3]))
        out = (h < h0) | (h > h1) | (vis < v0) | (vis > v1)
        gt = np.concatenate([full[~out], full[out], im.ignore_xywh])  # regular first, ignored last
        g_ign = np.r_[np.zeros((~out).sum(), bool), np.ones(out.sum() + len(im.ignore_xywh), bool)]
        npig += int((~out).sum())

        d = det_map.get(im.image_id, np.zeros((0, 5)))
        d = d[np.argsort(-d[:, 4], kind="stable")][:max_dets]
        d = d[(d[:, 3] >= h0 / 1.25) & (d[:, 3] < h1 * 1.25)]
        if len(d) == 0:
            continue
        ov_iou, ov_ioa = _overlaps(_xyxy(d), _xyxy(gt)) if len(gt) else (np.zeros((len(d), 0)),) * 2
        ov = np.where(g_ign[None, :], ov_ioa, ov_iou)  # ignored ground truth is matched by IoA
        matched = np.zeros(len(gt), dtype=bool)
        is_tp = np.zeros(len(d), dtype=bool)
        is_ign = np.zeros(len(d), dtype=bool)
        regular = np.flatnonzero(~g_ign)
        ignored = np.flatnonzero(g_ign)
        for i in range(len(d)):
            cand = regular[~matched[regular] & (ov[i, regular] >= thr)]
            if len(cand):
                best = ov[i, cand]
                j = cand[len(best) - 1 - int(np.argmax(best[::-1]))]  # last of the best, as the loop
                matched[j] = True
                is_tp[i] = True
            elif (ov[i, ignored] >= thr).any():
                is_ign[i] = True
        all_scores.append(d[:, 4])
        all_tp.append(is_tp)
        all_ign.append(is_ign)
    if npig == 0:
        return {"MR-2": -1.0}
    if not all_scores:
        return {"MR-2": 1.0}
    sc = np.concatenate(all_scores)
    order = np.argsort(-sc, kind="stable")
    tp_flag = np.concatenate(all_tp)[order]
    keep = ~np.concatenate(all_ign)[order]
    tp_flag = tp_flag[keep]
    tp = np.cumsum(tp_flag)
    fp = np.cumsum(~tp_flag)
    if len(tp) == 0:
        return {"MR-2": 1.0}
    fppi = fp / len(images)
    recall = tp / npig
    idx = np.searchsorted(fppi, CITYPERSONS_FPPI_REF, side="right") - 1
    rec_at = np.where(idx >= 0, recall[np.maximum(idx, 0)], 0.0)
    with np.errstate(divide="ignore"):
        mr = float(np.exp(np.mean(np.log(1.0 - rec_at))))
    return {"MR-2": mr}
