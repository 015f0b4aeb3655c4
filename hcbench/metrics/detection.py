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

Speed: per image the IoU/IoA matrices are computed once and reduced to the pairs above the
threshold; the greedy matching runs for all images at once in lockstep over detection rank, and
each JI threshold only cuts the same pairs to its kept detections (a score-sorted prefix), so
the assignment problem is solved once per distinct prefix, and only where detections or persons
share pairs. The numbers are those of the per-detection loop (tested against it).

CityPersons box areas are ``w * h`` of the [x, y, w, h] boxes, as the official ``COCOeval.iou``
takes them (not the corner difference, whose rounding can decide an IoA of exactly 0.5).

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


def _overlaps(d: np.ndarray, g: np.ndarray, d_area: np.ndarray | None = None,
              g_area: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection / area of d) between [x1,y1,x2,y2] rows of d and g; box areas from the
    corners unless given (CityPersons' official code takes them as w * h of the [x, y, w, h] boxes)."""
    iw = np.minimum(d[:, None, 2], g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(d[:, None, 3], g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.maximum(iw, 0) * np.maximum(ih, 0)
    da = ((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]) if d_area is None else d_area)[:, None]
    ga = ((g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1]) if g_area is None else g_area)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.nan_to_num(inter / (da + ga - inter))
        ioa = np.nan_to_num(inter / da)
    return iou, ioa


# --------------------------------------------------------------------------- CrowdHuman
class _Edges:
    """Per image, computed once: the (detection, person) pairs with IoU above the threshold, and
    which detections / persons lie on an ignore region (IoA above it). AP, MR-2 and every JI
    threshold read these; nothing is recomputed per threshold."""

    def __init__(self) -> None:
        self.det: list[np.ndarray] = []  # global detection index (images' detections concatenated)
        self.gt: list[np.ndarray] = []  # global person index
        self.iou: list[np.ndarray] = []

    def add(self, det: np.ndarray, gt: np.ndarray, iou: np.ndarray) -> None:
        self.det.append(det)
        self.gt.append(gt)
        self.iou.append(iou)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        def cat(xs: list[np.ndarray], dtype: type) -> np.ndarray:
            return np.concatenate(xs) if xs else np.zeros(0, dtype)

        return cat(self.det, np.int64), cat(self.gt, np.int64), cat(self.iou, np.float64)


def _greedy_match(rank: np.ndarray, e_det: np.ndarray, e_gt: np.ndarray, e_iou: np.ndarray,
                  n_det: int, n_gt: int) -> np.ndarray:
    """The toolkit's per-image rule for all images at once: detections in score order each take the
    unmatched person of highest IoU (the first on ties) among their edges. Runs in lockstep over
    the detections' rank within their image; images never share persons, so one step serves all."""
    matched_det = np.zeros(n_det, dtype=bool)
    if len(e_det) == 0:
        return matched_det
    taken = np.zeros(n_gt, dtype=bool)
    # edges by (rank, detection, IoU descending, person index): the first free edge is the choice
    order = np.lexsort((e_gt, -e_iou, e_det, rank[e_det]))
    e_det, e_gt, e_rank = e_det[order], e_gt[order], rank[e_det[order]]
    bounds = np.flatnonzero(np.diff(e_rank)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(e_det)], strict=True):
        d, g = e_det[lo:hi], e_gt[lo:hi]
        free = ~taken[g]
        d, g = d[free], g[free]
        if len(d) == 0:
            continue
        first = np.r_[True, d[1:] != d[:-1]]
        taken[g[first]] = True
        matched_det[d[first]] = True
    return matched_det


class _JiImage:
    """One image's matching problem for JI: its edges (sorted by detection, i.e. by score rank) in
    compact row/column numbering, computed once and cut to each threshold's kept detections."""

    def __init__(self, li: np.ndarray, lj: np.ndarray, w: np.ndarray, d_ig: np.ndarray, g_ig: np.ndarray,
                 score: np.ndarray, n_persons: int):
        self.li, self.w, self.score, self.n_persons = li, w, score, n_persons
        self.row = np.r_[0, np.cumsum(li[1:] != li[:-1])] if len(li) else np.zeros(0, np.int64)
        self.col_ids, self.col = np.unique(lj, return_inverse=True)
        first = np.full(len(self.col_ids), len(lj))
        np.minimum.at(first, self.col, np.arange(len(lj)))
        self.col_first = np.sort(first)  # edge position where each person first appears
        self.d_ig, self.g_ig = d_ig, g_ig
        self.row_ig = d_ig[li[np.r_[True, li[1:] != li[:-1]]]] if len(li) else np.zeros(0, bool)
        self.col_ig = g_ig[self.col_ids]

    def counts(self, n_keep: int) -> tuple[int, int, int]:
        """(k, ignored matched detections, ignored matched persons) of the maximum-weight matching
        (CrowdDet's maxWeightMatching on the IoU-above-threshold edges) of the ``n_keep`` highest-
        scoring detections."""
        cut = int(np.searchsorted(self.li, n_keep))
        if cut == 0:
            return 0, 0, 0
        n_rows = int(self.row[cut - 1]) + 1
        n_cols = int(np.searchsorted(self.col_first, cut))
        if n_rows == cut and n_cols == cut:  # no detection or person shares an edge: all of them match
            return cut, int(self.row_ig[:n_rows].sum()), int(self.col_ig[self.col[:cut]].sum())
        from scipy.optimize import linear_sum_assignment

        mat = np.zeros((n_rows, len(self.col_ids)))
        mat[self.row[:cut], self.col[:cut]] = self.w[:cut]
        rows, cols = linear_sum_assignment(mat, maximize=True)
        ok = mat[rows, cols] > 0
        return int(ok.sum()), int(self.row_ig[rows[ok]].sum()), int(self.col_ig[cols[ok]].sum())


def crowdhuman_eval(gts: Sequence[Any], dets: Mapping[Any, Any], iou: float = 0.5) -> dict[str, float]:
    """AP, MR-2 and JI of ``dets`` (image id -> (K, 5) [x, y, w, h, score]) on ``gts``.

    ``gts`` are :class:`hcbench.data.types.DetectionSample` (or dicts/objects with ``image_id``,
    ``boxes`` (N, 4) full boxes, ``ignore`` (M, 4), optional ``width``/``height``), all [x, y, w, h].
    Images of ``gts`` without detections count as images with none.
    """
    images = _images(gts)
    det_map = _dets(dets, images)
    edges = _Edges()
    scores, ranks, dt_ign = [], [], []
    ji_images = []  # per image: local edges, ignore flags, scores
    n_det = n_gt = 0
    for im in images:
        persons = _clip(_xyxy(im.full_xywh), im.width, im.height)
        ignores = _clip(_xyxy(im.ignore_xywh), im.width, im.height)
        d = det_map.get(im.image_id, np.zeros((0, 5)))
        d = d[np.argsort(-d[:, 4], kind="stable")]
        dxy = _clip(_xyxy(d), im.width, im.height)
        n_p = len(persons)
        if len(dxy) and (n_p or len(ignores)):  # one overlap call against persons and ignores
            ov_iou, ov_ioa = _overlaps(dxy, np.concatenate([persons, ignores]))
            li, lj = np.nonzero(ov_iou[:, :n_p] > iou)  # row-major: sorted by detection
            w = ov_iou[li, lj]
            d_ig = (ov_ioa[:, n_p:] > iou).any(1)
        else:
            li = lj = np.zeros(0, np.int64)
            w = np.zeros(0)
            d_ig = np.zeros(len(dxy), bool)
        if len(ignores) and n_p:
            g_ig = (_overlaps(persons, ignores)[1] > iou).any(1)
        else:
            g_ig = np.zeros(n_p, bool)
        edges.add(li + n_det, lj + n_gt, w)
        scores.append(d[:, 4])
        ranks.append(np.arange(len(d)))
        dt_ign.append(d_ig)
        ji_images.append(_JiImage(li, lj, w, d_ig, g_ig, d[:, 4], n_p))
        n_det += len(d)
        n_gt += len(persons)
    if n_gt == 0:
        return {"AP": -1.0, "MR-2": -1.0, "JI": -1.0}
    score = np.concatenate(scores) if scores else np.zeros(0)
    rank = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
    ign = np.concatenate(dt_ign) if dt_ign else np.zeros(0, bool)
    tp = _greedy_match(rank, *edges.arrays(), n_det, n_gt)
    label = np.where(tp, 1, np.where(ign, -1, 0))
    keep = label >= 0
    lab = label[keep][np.argsort(-score[keep], kind="stable")]
    tp_c = np.cumsum(lab == 1)
    fp_c = np.cumsum(lab == 0)
    recall = tp_c / n_gt
    precision = tp_c / np.maximum(tp_c + fp_c, 1)
    ap = float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2)) if len(lab) > 1 else 0.0

    if len(lab) == 0:
        mr = 1.0
    else:
        fppi = fp_c / len(images)
        idx = [int(np.argmax(fppi >= r)) if (fppi >= r).any() else len(fppi) - 1 for r in CROWDHUMAN_FPPI_REF]
        miss = 1.0 - recall[idx]
        with np.errstate(divide="ignore"):
            mr = float(np.exp(np.mean(np.log(miss))))
    return {"AP": ap, "MR-2": mr, "JI": _ji(ji_images)}


def _ji(ji_images: list[_JiImage]) -> float:
    """Best over the score thresholds 0.0 .. 0.9 of the mean per-image Jaccard index."""
    thresholds = np.array([0.1 * t for t in range(10)])
    ratios = np.zeros((len(thresholds), len(ji_images)))
    counted = np.zeros((len(thresholds), len(ji_images)), dtype=bool)
    for i, im in enumerate(ji_images):
        n_keep = np.searchsorted(-im.score, -thresholds, side="left")  # score > thr: a prefix
        ign_kept = np.r_[0, np.cumsum(im.d_ig)][n_keep]
        g_ig_total = int(im.g_ig.sum())
        cache: dict[int, tuple[int, int, int]] = {}
        for t, nk in enumerate(n_keep.tolist()):
            n_edge = int(np.searchsorted(im.li, nk))  # the same edges give the same matching
            if n_edge not in cache:
                cache[n_edge] = im.counts(nk)
            k, k_dig, k_gig = cache[n_edge]
            m = im.n_persons - (g_ig_total - k_gig)  # unmatched persons on an ignore region leave
            n = nk - (int(ign_kept[t]) - k_dig)  # unmatched detections on one leave
            ratios[t, i] = k / (m + n - k + _JI_EPS)
            counted[t, i] = m != 0 or n != 0
    best = 0.0
    for t in range(len(thresholds)):
        # summed image by image, in order (the reference accumulates one float at a time)
        total = float(np.cumsum(ratios[t])[-1]) if len(ji_images) else 0.0
        c = int(counted[t].sum())
        best = max(best, total / c if c else 0.0)
    return float(best)


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
        # areas as the official COCOeval.iou takes them: w * h, not (x2 - x1) * (y2 - y1), whose
        # rounding can decide an overlap of exactly 0.5 the other way
        ov_iou, ov_ioa = (_overlaps(_xyxy(d), _xyxy(gt), d[:, 2] * d[:, 3], gt[:, 2] * gt[:, 3]) if len(gt)
                          else (np.zeros((len(d), 0)),) * 2)
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
