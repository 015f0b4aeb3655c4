"""COCO keypoint evaluation (OKS AP/AR) in vectorised numpy, with pycocotools' exact semantics.

This reproduces ``pycocotools.cocoeval.COCOeval(iouType="keypoints")`` step by step, so the ten
stats (and the full precision/recall arrays) are the same numbers, bit for bit on the cases the
tests draw, at a fraction of the time:

* ``_prepare``: a ground-truth person is *ignored* when ``iscrowd`` is set or ``num_keypoints == 0``;
* ``computeOks``: per (image, category), detections sorted by descending score (stable) and cut to
  ``maxDets`` (20); OKS ``sum(exp(-d^2 / vars / (area + eps) / 2)) / n`` over the ground truth's
  labelled keypoints (``v > 0``), or, for a person without any, over all keypoints with the distance
  to the box doubled around it; the sum runs over the same elements in the same order as
  pycocotools' ``np.sum``, so OKS values are identical, not merely close;
* ``evaluateImg``: per area range (all / medium 32²–96² / large > 96² by the ground truth's
  ``area``) a ground truth outside the range is ignored too; at each OKS threshold (0.50:0.05:0.95)
  each detection in score order takes the regular (non-ignored) unmatched person of highest OKS
  ≥ the threshold (ties: the later one, as the loop's ``>=`` keeps the last), and only when there is
  none an ignored one (crowd persons can take any number of detections); a detection matched to an
  ignored person, or unmatched with its own area (the keypoints' extent, or ``bbox`` w·h when the
  results carry boxes: ``loadRes``' rule) outside the range, is ignored; a match to a ground truth
  whose ``id`` is 0 counts as no match, as in pycocotools (it stores matches as ids);
* ``accumulate``: detections of all images pooled in image-id order and sorted by score (stable),
  cumulative TP/FP, precision made monotone from the right and read at the 101 recall thresholds
  (``searchsorted(..., "left")``; 0 past the last recall), recall = final TP / non-ignored persons;
  a setting without non-ignored persons stays ``-1``;
* ``summarize``: the ten keypoint stats as means over the entries ``> -1``.

What is vectorised: OKS over all (detection, person) pairs at once; the greedy matching runs in
lockstep over detection rank (at most ``maxDets`` steps) for all images, area ranges and thresholds
together, with images bucketed by their number of persons; accumulation over thresholds at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.types import DataFormatError

IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)  # as pycocotools
REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
AREA_RANGES: dict[str, tuple[float, float]] = {"all": (0 ** 2, 1e5 ** 2), "medium": (32 ** 2, 96 ** 2),
                                               "large": (96 ** 2, 1e5 ** 2)}
MAX_DETS = 20
AREA_PROXY = 0.53  # crowdposetools / xtcocotools: OKS scale when the annotation has no area
_EPS = np.spacing(1)
_PAIR_CHUNK = 1 << 16  # (detection, person) pairs per OKS block: bounds memory at ~K x 8 MiB


@dataclass
class _Persons:
    unit: np.ndarray  # (N,) index of the (category, image) evaluation unit
    ids: np.ndarray  # (N,) annotation ids (0 counts as "no match", as in pycocotools)
    kpts: np.ndarray  # (N, K, 3)
    bbox: np.ndarray  # (N, 4)
    area: np.ndarray  # (N,)
    crowd: np.ndarray  # (N,) bool
    ignore: np.ndarray  # (N,) bool: iscrowd or num_keypoints == 0


@dataclass
class _Dets:
    unit: np.ndarray  # (M,) after sorting by (unit, -score) and cutting to max_dets per unit
    rank: np.ndarray  # (M,) position within its unit
    kpts: np.ndarray  # (M, K, 3)
    score: np.ndarray  # (M,)
    area: np.ndarray  # (M,)


class OksEvaluation:
    """Per-detection matches of one keypoint evaluation; accumulate over any image subset.

    Made by :func:`evaluate_oks`. ``precision_recall(img_ids)`` gives pycocotools'
    ``eval["precision"]`` (T, R, K, A, 1) and ``eval["recall"]`` (T, K, A, 1) arrays, as if
    ``params.imgIds`` had been set to ``img_ids``; ``stats(img_ids)`` the ten summary numbers.
    """

    def __init__(self, img_ids: np.ndarray, cat_ids: list, area_ranges: dict[str, tuple[float, float]],
                 max_dets: int, persons: _Persons, dets: _Dets, dt_match: np.ndarray, dt_ignore: np.ndarray,
                 gt_ignore: np.ndarray):
        self.img_ids = img_ids
        self.cat_ids = cat_ids
        self.area_ranges = area_ranges
        self.max_dets = max_dets
        self._persons = persons
        self._dets = dets
        self._dt_match = dt_match  # (A, T, M) bool: matched to a person whose id is not 0
        self._dt_ignore = dt_ignore  # (A, T, M) bool
        self._gt_ignore = gt_ignore  # (A, N) bool
        n_img = max(len(img_ids), 1)
        self._dt_img = dets.unit % n_img
        self._dt_cat = dets.unit // n_img
        self._gt_img = persons.unit % n_img
        self._gt_cat = persons.unit // n_img
        # pycocotools pools images in id order, then sorts by score with a stable sort
        self._dt_order = np.lexsort((dets.rank, self._dt_img, -dets.score))

    def _image_mask(self, img_ids: Sequence[Any] | None, n: int, which: np.ndarray) -> np.ndarray:
        if img_ids is None:
            return np.ones(n, dtype=bool)
        keep = np.isin(self.img_ids, np.unique(np.asarray(list(img_ids))))
        return keep[which]

    def precision_recall(self, img_ids: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(precision (T, R, K, A, 1), recall (T, K, A, 1)) over the images ``img_ids`` (all if None)."""
        t_n, r_n, k_n, a_n = len(IOU_THRS), len(REC_THRS), len(self.cat_ids), len(self.area_ranges)
        precision = -np.ones((t_n, r_n, k_n, a_n, 1))
        recall = -np.ones((t_n, k_n, a_n, 1))
        dt_in = self._image_mask(img_ids, len(self._dt_img), self._dt_img)
        gt_in = self._image_mask(img_ids, len(self._gt_img), self._gt_img)
        order = self._dt_order[dt_in[self._dt_order]]
        for k in range(k_n):
            sel = order[self._dt_cat[order] == k]
            gt_k = gt_in & (self._gt_cat == k)
            for a in range(a_n):
                npig = int(np.count_nonzero(~self._gt_ignore[a, gt_k]))
                if npig == 0:
                    continue
                dtm = self._dt_match[a][:, sel]
                dtig = self._dt_ignore[a][:, sel]
                tp_sum = np.cumsum(dtm & ~dtig, axis=1).astype(float)
                fp_sum = np.cumsum(~dtm & ~dtig, axis=1).astype(float)
                nd = tp_sum.shape[1]
                if nd == 0:
                    recall[:, k, a, 0] = 0
                    precision[:, :, k, a, 0] = 0
                    continue
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + _EPS)
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                recall[:, k, a, 0] = rc[:, -1]
                for t in range(t_n):
                    inds = np.searchsorted(rc[t], REC_THRS, side="left")
                    precision[t, :, k, a, 0] = np.where(inds < nd, pr[t, np.minimum(inds, nd - 1)], 0.0)
        return precision, recall

    def stats(self, img_ids: Sequence[Any] | None = None) -> np.ndarray:
        """pycocotools' ten keypoint stats: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl."""
        precision, recall = self.precision_recall(img_ids)
        labels = list(self.area_ranges)

        def summarize(ap: bool, thr: float | None = None, area: str = "all") -> float:
            aind = [i for i, lbl in enumerate(labels) if lbl == area]
            s = precision if ap else recall
            if thr is not None:
                s = s[np.where(thr == IOU_THRS)[0]]
            s = s[:, :, :, aind, [0]] if ap else s[:, :, aind, [0]]
            return -1.0 if len(s[s > -1]) == 0 else float(np.mean(s[s > -1]))

        return np.array([summarize(True), summarize(True, .5), summarize(True, .75),
                         summarize(True, area="medium"), summarize(True, area="large"),
                         summarize(False), summarize(False, .5), summarize(False, .75),
                         summarize(False, area="medium"), summarize(False, area="large")])


# --------------------------------------------------------------------------- inputs
def _keypoint_array(rows: list, k: int, source: str | Path, what: str) -> np.ndarray:
    if not rows:
        return np.zeros((0, k, 3))
    try:
        arr = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.ndim != 2 or arr.shape[1] != 3 * k:
        for i, r in enumerate(rows):
            if not isinstance(r, (list, tuple)) or len(r) != 3 * k:
                n = len(r) if isinstance(r, (list, tuple)) else type(r).__name__
                raise DataFormatError(source, f"{n} keypoint values, expected {3 * k} ({k} keypoints x 3)",
                                      record=f"{what}[{i}]" if what else i)
        raise DataFormatError(source, "keypoints must be numbers")
    return arr.reshape(len(rows), k, 3)


def _select(kp: np.ndarray, keypoints: slice | Sequence[int] | None) -> np.ndarray:
    if keypoints is None:
        return kp
    return kp[:, keypoints] if isinstance(keypoints, slice) else kp[:, list(keypoints)]


def _persons(gt: Mapping[str, Any], unit_of, k_all: int, keypoints, use_area: bool, field: str,
             source: str | Path) -> _Persons:
    anns = gt["annotations"]
    ids = [a["id"] for a in anns]
    if len(set(ids)) != len(ids):
        seen: set = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DataFormatError(source, f"annotation id {dup!r} appears more than once")
    unit = unit_of([a["category_id"] for a in anns], [a["image_id"] for a in anns])
    kp_all = _keypoint_array([a[field] for a in anns], k_all, source, "annotations")
    bbox = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    if use_area:
        try:
            area = np.array([float(a["area"]) for a in anns], dtype=np.float64)
        except KeyError:
            raise DataFormatError(source, "an annotation lacks 'area' (use_area=False uses 0.53 w h)") from None
    else:
        area = bbox[:, 2] * bbox[:, 3] * AREA_PROXY
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    # num_keypoints as given; when absent, the number of labelled keypoints of the whole record
    labelled = np.count_nonzero(kp_all[:, :, 2] > 0, axis=1)
    nk = np.array([a.get("num_keypoints", -1) for a in anns], dtype=np.float64)
    nk = np.where(nk == -1, labelled, nk)
    return _Persons(unit=unit, ids=np.array(ids), kpts=_select(kp_all, keypoints), bbox=bbox, area=area,
                    crowd=crowd, ignore=crowd | (nk == 0))


def _dets(results: Sequence[Mapping[str, Any]], unit_of, k_all: int, keypoints, max_dets: int,
          field: str, source: str | Path, arrays: tuple[np.ndarray, np.ndarray] | None) -> _Dets:
    unit = unit_of([r["category_id"] for r in results], [r["image_id"] for r in results])
    if arrays is None:
        score = np.array([r["score"] for r in results], dtype=np.float64)
        kp_all = _keypoint_array([r[field] for r in results], k_all, source, "")
    else:
        kp_all, score = arrays[0].reshape(len(results), k_all, 3), arrays[1]
    if results and "bbox" in results[0] and not results[0]["bbox"] == []:
        # loadRes takes the box branch when the first result has a box: area = w * h
        try:
            area = np.array([float(r["bbox"][2]) * float(r["bbox"][3]) for r in results])
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataFormatError(source, "the first result has a 'bbox', so every result needs [x, y, w, h]") from None
    else:
        x, y = kp_all[:, :, 0], kp_all[:, :, 1]
        area = (x.max(1) - x.min(1)) * (y.max(1) - y.min(1)) if len(results) else np.zeros(0)
    # results outside the evaluated images/categories take no part (pycocotools' getAnnIds filter)
    keep = unit >= 0
    order = np.lexsort((-score[keep], unit[keep]))
    idx = np.flatnonzero(keep)[order]
    u = unit[idx]
    start = np.r_[0, np.flatnonzero(np.diff(u)) + 1] if len(u) else np.zeros(0, np.int64)
    rank = np.arange(len(u)) - np.repeat(start, np.diff(np.r_[start, len(u)])) if len(u) else np.zeros(0, np.int64)
    cut = rank < max_dets
    idx, rank = idx[cut], rank[cut]
    return _Dets(unit=unit[idx], rank=rank, kpts=_select(kp_all, keypoints)[idx], score=score[idx],
                 area=area[idx])


# --------------------------------------------------------------------------- OKS
def _oks_pairs(dk: np.ndarray, gk: np.ndarray, g_bbox: np.ndarray, g_area: np.ndarray,
               variances: np.ndarray) -> np.ndarray:
    """OKS of pairs (row i: detection keypoints dk[i] against person gk[i]), as computeOks."""
    k = variances.size
    vis = gk[:, :, 2] > 0
    k1 = np.count_nonzero(vis, axis=1)
    dx = dk[:, :, 0] - gk[:, :, 0]
    dy = dk[:, :, 1] - gk[:, :, 1]
    none = k1 == 0
    if none.any():  # distance to the person's box doubled around it
        bb = g_bbox[none]
        x0 = (bb[:, 0] - bb[:, 2])[:, None]
        x1 = (bb[:, 0] + bb[:, 2] * 2)[:, None]
        y0 = (bb[:, 1] - bb[:, 3])[:, None]
        y1 = (bb[:, 1] + bb[:, 3] * 2)[:, None]
        xd, yd = dk[none, :, 0], dk[none, :, 1]
        dx[none] = np.maximum(0, x0 - xd) + np.maximum(0, xd - x1)
        dy[none] = np.maximum(0, y0 - yd) + np.maximum(0, yd - y1)
    e = (dx ** 2 + dy ** 2) / variances / (g_area + _EPS)[:, None] / 2
    ex = np.exp(-e)
    out = np.empty(len(dk))
    if none.any():
        out[none] = ex[none].sum(axis=1) / k
    # sum the labelled keypoints compacted to the front, in their order, one row length at a time:
    # the same additions in the same order as np.sum over e[vg > 0]
    front = np.argsort(~vis, axis=1, kind="stable")
    for n in np.unique(k1[~none]):
        rows = np.flatnonzero(k1 == n)
        vals = np.take_along_axis(ex[rows], front[rows, :n], axis=1)
        out[rows] = vals.sum(axis=1) / n
    return out


def _pair_index(d_start: np.ndarray, d_cnt: np.ndarray, g_start: np.ndarray, g_cnt: np.ndarray):
    """All (detection, person) index pairs of each unit, with their local positions."""
    per = d_cnt * g_cnt
    total = int(per.sum())
    u = np.repeat(np.arange(len(per)), per)
    local = np.arange(total) - np.repeat(np.cumsum(per) - per, per)
    gc = g_cnt[u]
    d_loc, g_loc = local // gc, local % gc
    return u, d_start[u] + d_loc, g_start[u] + g_loc, d_loc, g_loc


# --------------------------------------------------------------------------- matching
def _match(oks: np.ndarray, gig: np.ndarray, crowd: np.ndarray, n_dets: np.ndarray) -> np.ndarray:
    """Greedy matching of evaluateImg for a bucket of units at every area range and threshold.

    ``oks`` (U, D, G) padded with -1, ``gig`` (A, U, G) ignore flags, ``crowd`` (U, G), units
    ordered by their number of detections ``n_dets``, most first (step r then works on a prefix).
    Returns (A, T, U, D) the matched person's position (-1: none)."""
    n_a, n_u, n_g = gig.shape
    n_d = oks.shape[1]
    thr = np.minimum(IOU_THRS, 1 - 1e-10)[None, :, None, None]
    reg = ~gig[:, None]  # (A, 1, U, G)
    taken = np.zeros((n_a, len(IOU_THRS), n_u, n_g), dtype=bool)
    out = np.full((n_a, len(IOU_THRS), n_u, n_d), -1, dtype=np.int64)
    not_crowd = ~crowd[None, None]
    rev = np.arange(n_g - 1, -1, -1)
    for r in range(n_d):
        k = int(np.count_nonzero(n_dets > r))  # units that still have an r-th detection
        o = oks[:k, r, :][None, None]  # (1, 1, k, G)
        tk = taken[:, :, :k]
        cand = (o >= thr) & ~(tk & not_crowd[:, :, :k])
        c_reg = cand & reg[:, :, :k]
        has_reg = c_reg.any(-1, keepdims=True)
        use = np.where(has_reg, c_reg, cand & ~reg[:, :, :k])
        found = use.any(-1)
        if not found.any():
            continue
        val = np.where(use, o, -np.inf)[..., rev]
        best = n_g - 1 - np.argmax(val, axis=-1)  # the last of the highest, as the loop's ">="
        a_i, t_i, u_i = np.nonzero(found)
        g_i = best[a_i, t_i, u_i]
        tk[a_i, t_i, u_i, g_i] = True
        out[a_i, t_i, u_i, r] = g_i
    return out


def evaluate_oks(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], sigmas: Sequence[float], *,
                 keypoints: slice | Sequence[int] | None = None, field: str = "keypoints",
                 result_field: str | None = None, use_area: bool = True, max_dets: int = MAX_DETS,
                 area_ranges: Mapping[str, tuple[float, float]] | None = None,
                 source: str | Path = "<gt>", result_source: str | Path = "<results>",
                 result_arrays: tuple[np.ndarray, np.ndarray] | None = None) -> OksEvaluation:
    """COCO keypoint evaluation of ``results`` against the COCO ground truth ``gt`` (both plain
    dicts/lists as in the JSON files; neither is modified nor copied).

    ``sigmas`` are the OKS sigmas of the evaluated keypoints. ``field``/``result_field`` name the
    keypoint list in the annotations / results (default ``"keypoints"`` for both), and
    ``keypoints`` picks a part of it (a slice or indices of keypoints, e.g. ``slice(17, 23)``):
    that is how a per-part evaluation (COCO-WholeBody body/foot/face/hands) is built on this.
    What decides that a person is ignored is its own ``iscrowd`` and ``num_keypoints`` (pass a
    ground truth whose ``num_keypoints`` counts the part when the part's protocol wants that);
    a missing ``num_keypoints`` counts the labelled keypoints of the whole list, a missing
    ``iscrowd`` is 0. ``use_area=False`` takes 0.53·w·h of the box as the OKS scale and for the
    area ranges (CrowdPose/AIC). Detections' areas follow pycocotools' ``loadRes`` (the extent of
    all their keypoints, or ``bbox`` w·h when the results carry boxes).

    Inputs are expected to be validated already (:func:`hcbench.metrics.pose.keypoint_ap` does);
    results for images or categories the ground truth lacks take no part. ``result_arrays``:
    the results' ``result_field`` values (N, 3K) and scores (N,) as float arrays when the caller
    has them already (validation makes them), to spare converting the lists twice.
    """
    sig = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    variances = (sig * 2) ** 2
    ranges = dict(AREA_RANGES if area_ranges is None else area_ranges)
    result_field = result_field or field
    img_ids = np.unique(np.asarray([img["id"] for img in gt["images"]]))
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    n_img = max(len(img_ids), 1)
    img_pos = {v: i for i, v in enumerate(img_ids.tolist())}
    cat_pos = {c: i for i, c in enumerate(cat_ids)}

    def unit_of(cats: list, imgs: list) -> np.ndarray:
        """(category, image) -> unit index; -1 for either not in the ground truth."""
        c = np.array([cat_pos.get(x, -1) for x in cats], dtype=np.int64)
        i = np.array([img_pos.get(x, -1) for x in imgs], dtype=np.int64)
        return np.where((c < 0) | (i < 0), -1, c * n_img + i)

    k_all = _count_keypoints(gt, field)
    persons = _persons(gt, unit_of, k_all, keypoints, use_area, field, source)
    if persons.kpts.shape[1] != sig.size:
        raise ValueError(f"{sig.size} sigmas for {persons.kpts.shape[1]} evaluated keypoints")
    if (persons.unit < 0).any():  # another category or image: not evaluated (getAnnIds' filter)
        keep = persons.unit >= 0
        persons = _Persons(**{f: getattr(persons, f)[keep] for f in persons.__dataclass_fields__})
    dets = _dets(results, unit_of, k_all, keypoints, max_dets, result_field, result_source, result_arrays)

    # persons grouped by unit in annotation order (pycocotools' imgToAnns order)
    g_order = np.argsort(persons.unit, kind="stable")
    persons = _Persons(**{f: getattr(persons, f)[g_order] for f in persons.__dataclass_fields__})
    n_units = len(cat_ids) * len(img_ids)
    g_cnt = np.bincount(persons.unit, minlength=n_units)
    d_cnt = np.bincount(dets.unit, minlength=n_units)
    g_start = np.cumsum(g_cnt) - g_cnt
    d_start = np.cumsum(d_cnt) - d_cnt

    lo = np.array([r[0] for r in ranges.values()])[:, None]
    hi = np.array([r[1] for r in ranges.values()])[:, None]
    gig = persons.ignore[None] | (persons.area[None] < lo) | (persons.area[None] > hi)  # (A, N)
    d_out = (dets.area[None] < lo) | (dets.area[None] > hi)  # (A, M)
    n_a, n_t = len(ranges), len(IOU_THRS)
    match = np.full((n_a, n_t, len(dets.unit)), -1, dtype=np.int64)  # global person index

    both = np.flatnonzero((g_cnt > 0) & (d_cnt > 0))
    if both.size:
        # bucket units by person count (powers of two) so that padding stays below 2x
        width = 1 << np.ceil(np.log2(g_cnt[both])).astype(np.int64)
        for w in np.unique(width):
            units = both[width == w]
            units = units[np.argsort(-d_cnt[units], kind="stable")]  # most detections first
            n_d = int(d_cnt[units].max())
            oks = np.full((len(units), n_d, int(w)), -1.0)
            u, di, gi, dl, gl = _pair_index(d_start[units], d_cnt[units], g_start[units], g_cnt[units])
            for s in range(0, len(u), _PAIR_CHUNK):
                sl = slice(s, s + _PAIR_CHUNK)
                oks[u[sl], dl[sl], gl[sl]] = _oks_pairs(dets.kpts[di[sl]], persons.kpts[gi[sl]],
                                                        persons.bbox[gi[sl]], persons.area[gi[sl]], variances)
            g_pad = np.minimum(np.arange(int(w))[None], g_cnt[units][:, None] - 1) + g_start[units][:, None]
            m = _match(oks, gig[:, g_pad], persons.crowd[g_pad], d_cnt[units])  # (A, T, U, D) local position
            ok = m >= 0
            a_i, t_i, u_i, r_i = np.nonzero(ok)
            match[a_i, t_i, d_start[units][u_i] + r_i] = g_start[units][u_i] + m[ok]

    found = match >= 0
    safe = np.maximum(match, 0)
    ids = np.r_[persons.ids, 1] if len(persons.ids) else np.ones(1)  # (index 0 stands in when empty)
    dt_match = found & (ids[safe] != 0)
    a_idx = np.arange(n_a)[:, None, None]
    gig_safe = np.c_[gig, np.zeros((n_a, 1), bool)]
    dt_ignore = (found & gig_safe[a_idx, safe]) | (~dt_match & d_out[:, None, :])
    return OksEvaluation(img_ids, cat_ids, ranges, max_dets, persons, dets, dt_match, dt_ignore, gig)


def _count_keypoints(gt: Mapping[str, Any], field: str) -> int:
    if field == "keypoints":
        for cat in gt.get("categories", []):
            if isinstance(cat, Mapping) and cat.get("keypoints"):
                return len(cat["keypoints"])
    for ann in gt.get("annotations", []):
        if field in ann:
            return len(ann[field]) // 3
    return 0
