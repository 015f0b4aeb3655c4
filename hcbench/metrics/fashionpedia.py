"""Fashionpedia evaluation: mask/box AP under the IoU constraint and under IoU + attribute F1.

This is the evaluation of the official Fashionpedia API (``fashionpedia-api``, ``FPEval``),
re-implemented because the released package (``fashionpedia`` 1.1 on PyPI) needs scikit-learn and
scikit-image and calls ``np.float``, removed in numpy 1.24. It is built on pycocotools' ``COCOeval``
(IoUs, ground-truth preparation, area ranges, and the whole matching of categories without
attributes). What the official code does, and this module with it:

* IoU thresholds are COCO's 0.50:0.05:0.95 plus ``-1`` ("no IoU constraint"); attribute-F1
  thresholds are 0.50:0.05:0.95 plus ``-1`` ("no F1 constraint").
* The attribute F1 between a detection and a ground truth is scikit-learn's
  ``f1_score(gt_multihot, dt_multihot, average="macro")`` over the multi-hot vectors of *all*
  the ground-truth file's attributes (the official ``f1Type = "binary_macro"``): the mean of the
  F1 of the "attribute present" label and of the "attribute absent" label, over the labels that
  occur in either vector. Two empty sets give 1.0. Because absent attributes are counted, the
  score is lenient: with 294 attributes, GT {a, b} vs prediction {a} gives 0.833.
* Only the categories with attributes (:data:`FASHIONPEDIA_ATTRIBUTE_CATEGORIES`, the official
  ``catsWithAttributes``) use the F1 constraint. A detection of such a category matches a ground
  truth only if IoU >= t *and* F1 >= f; greedy like COCO, by descending score, but a later
  ground truth replaces the current candidate only if *both* its IoU and its F1 are at least the
  candidate's (so this is also how the "no F1 constraint" column of those categories matches,
  which can differ from COCO when one detection overlaps two ground truths), and crowd
  annotations are not special (Fashionpedia has none). Other categories are matched by COCO's
  own ``evaluateImg``.
* ``AP`` under IoU + F1 averages precision over IoU 0.50:0.95, the 101 recall points and a list of
  "category columns" in which each category with attributes appears once per F1 threshold
  0.50:0.95 (ten times) and each other category once (IoU only). ``AP`` under IoU only uses the
  "no F1 constraint" column of every category. Entries of -1 (no ground truth) are left out.

Category ids are matched against :data:`FASHIONPEDIA_ATTRIBUTE_CATEGORIES` as ids; the official
code mixes ids and positions in the sorted category list, which are the same for Fashionpedia's
ids 0..45.

Keys (fractions in [0, 1]; -1 where a setting has no ground truth), for ``prefix`` ``mask`` or
``box``: ``{p}_AP``, ``{p}_AP50``, ``{p}_AP75``, ``{p}_APs``, ``{p}_APm``, ``{p}_APl``,
``{p}_AR1``, ``{p}_AR10``, ``{p}_AR100`` (IoU constraint) and the same with ``_f1`` appended (IoU
+ F1 constraint), plus ``{p}_AP_f1_F150``/``{p}_AP_f1_F175`` (IoU 0.50:0.95, one F1 threshold).
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# The official ``FPParams.catsWithAttributes`` (dress, shorts, shirt/blouse, pants, vest, jacket,
# coat, sleeve, neckline, cardigan, cape, jumpsuit, top/t-shirt/sweatshirt, sweater, skirt,
# pocket, lapel, collar).
FASHIONPEDIA_ATTRIBUTE_CATEGORIES: tuple[int, ...] = (10, 7, 0, 6, 5, 4, 9, 31, 33, 3, 12, 11, 1, 2, 8, 32, 29, 28)
F1_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
IOU_TYPES = ("segm", "bbox")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # pycocotools prints progress; `hcbench score` prints JSON on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# --------------------------------------------------------------------------- attribute F1
def attribute_f1(gt: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Official "binary_macro" F1 of multi-hot rows: ``gt`` (G, N), ``dt`` (D, N) -> (D, G).

    For each pair, the F1 of label 1 (``2tp / (2tp + fp + fn)``) and of label 0
    (``2tn / (2tn + fp + fn)``), averaged over the labels present in either vector, exactly as
    ``sklearn.metrics.f1_score(gt, dt, average="macro")`` computes it.
    """
    gt = np.atleast_2d(np.asarray(gt, dtype=np.int64))
    dt = np.atleast_2d(np.asarray(dt, dtype=np.int64))
    n = gt.shape[1]
    tp = dt @ gt.T  # (D, G)
    npred = dt.sum(1)[:, None]
    ntrue = gt.sum(1)[None, :]
    fp, fn = npred - tp, ntrue - tp
    tn = n - tp - fp - fn
    wrong = fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        f_pos = np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0)
        f_neg = np.where(2 * tn + wrong > 0, 2 * tn / np.maximum(2 * tn + wrong, 1), 0.0)
    has_pos = (tp + wrong) > 0  # label 1 occurs in one of the two vectors
    has_neg = (tn + wrong) > 0
    count = has_pos.astype(np.int64) + has_neg
    return (f_pos * has_pos + f_neg * has_neg) / np.maximum(count, 1)


# --------------------------------------------------------------------------- evaluation
def _cocoeval_class():
    from pycocotools.cocoeval import COCOeval

    class FashionpediaCOCOeval(COCOeval):
        """COCOeval with the F1 axis: ``evalImgs`` hold (T, F, D) matches for every category."""

        def __init__(self, coco_gt, coco_dt, iou_type: str, attr_cats: set[int], attr_index: dict[int, int]):
            super().__init__(coco_gt, coco_dt, iou_type)
            self.params.iouThrs = np.append(self.params.iouThrs, -1.0)
            self.f1_thrs = np.append(F1_THRESHOLDS, -1.0)
            self.attr_cats = attr_cats
            self.attr_index = attr_index

        def _multihot(self, anns: Sequence[dict]) -> np.ndarray:
            out = np.zeros((len(anns), len(self.attr_index)), np.int64)
            for i, a in enumerate(anns):
                for att in a.get("attribute_ids") or ():
                    out[i, self.attr_index[att]] = 1
            return out

        def compute_f1(self, img_id: int, cat_id: int) -> np.ndarray | list:
            gt, dt = self._gts[img_id, cat_id], self._dts[img_id, cat_id]
            if len(gt) == 0 and len(dt) == 0:
                return []
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in order[: self.params.maxDets[-1]]]
            return attribute_f1(self._multihot(gt), self._multihot(dt))

        def evaluate(self) -> None:  # noqa: D102 - COCOeval's, with the F1 matrices
            p = self.params
            p.imgIds = list(np.unique(p.imgIds))
            p.catIds = list(np.unique(p.catIds))
            p.maxDets = sorted(p.maxDets)
            self._prepare()
            self.ious = {(i, c): self.computeIoU(i, c) for i in p.imgIds for c in p.catIds}
            self.f1s = {(i, c): self.compute_f1(i, c) for i in p.imgIds for c in p.catIds if c in self.attr_cats}
            self.evalImgs = [self.evaluate_img(i, c, a, p.maxDets[-1])
                             for c in p.catIds for a in p.areaRng for i in p.imgIds]

        def evaluate_img(self, img_id: int, cat_id: int, a_rng, max_det: int) -> dict | None:
            if cat_id not in self.attr_cats:
                e = self.evaluateImg(img_id, cat_id, a_rng, max_det)
                if e is None:
                    return None
                for k in ("dtMatches", "gtMatches", "dtIgnore"):
                    e[k] = e[k][:, None, :]  # one F1 column: "no constraint"
                return e
            return self._evaluate_attr_img(img_id, cat_id, a_rng, max_det)

        def _evaluate_attr_img(self, img_id: int, cat_id: int, a_rng, max_det: int) -> dict | None:
            gt, dt = self._gts[img_id, cat_id], self._dts[img_id, cat_id]
            if len(gt) == 0 and len(dt) == 0:
                return None
            for g in gt:
                g["_ignore"] = int(bool(g["ignore"] or g["area"] < a_rng[0] or g["area"] > a_rng[1]))
            gtind = np.argsort([g["_ignore"] for g in gt], kind="mergesort")
            gt = [gt[i] for i in gtind]
            order = np.argsort([-d["score"] for d in dt], kind="mergesort")
            dt = [dt[i] for i in order[:max_det]]
            ious, f1s = self.ious[img_id, cat_id], self.f1s[img_id, cat_id]
            if len(ious):
                ious, f1s = ious[:, gtind], f1s[:, gtind]
            iou_thrs, f1_thrs = self.params.iouThrs, self.f1_thrs
            T, F, G, D = len(iou_thrs), len(f1_thrs), len(gt), len(dt)
            gtm, dtm = np.zeros((T, F, G)), np.zeros((T, F, D))
            gt_ig = np.array([g["_ignore"] for g in gt])
            dt_ig = np.zeros((T, F, D))
            if len(ious):
                for ti, t in enumerate(iou_thrs):
                    for fi, f in enumerate(f1_thrs):
                        for di, d in enumerate(dt):
                            best_iou, best_f1, m = min(t, 1 - 1e-10), min(f, 1 - 1e-10), -1
                            for gi in range(G):
                                if gtm[ti, fi, gi] > 0:
                                    continue
                                if m > -1 and gt_ig[m] == 0 and gt_ig[gi] == 1:
                                    break
                                if ious[di, gi] < best_iou or f1s[di, gi] < best_f1:
                                    continue
                                best_iou, best_f1, m = ious[di, gi], f1s[di, gi], gi
                            if m == -1:
                                continue
                            dt_ig[ti, fi, di] = gt_ig[m]
                            dtm[ti, fi, di] = gt[m]["id"]
                            gtm[ti, fi, m] = d["id"]
            outside = np.array([d["area"] < a_rng[0] or d["area"] > a_rng[1] for d in dt], bool).reshape(1, 1, D)
            dt_ig = np.logical_or(dt_ig, np.logical_and(dtm == 0, outside))
            return {"image_id": img_id, "category_id": cat_id, "aRng": a_rng, "maxDet": max_det,
                    "dtIds": [d["id"] for d in dt], "gtIds": [g["id"] for g in gt], "dtMatches": dtm,
                    "gtMatches": gtm, "dtScores": [d["score"] for d in dt], "gtIgnore": gt_ig, "dtIgnore": dt_ig}

        def accumulate_fp(self) -> None:
            """precision (T, F, R, K, A, M) and recall (T, F, K, A, M); -1 where nothing was evaluated.
            Categories without attributes fill only the last F column (no F1 constraint)."""
            p = self.params
            T, F, R = len(p.iouThrs), len(self.f1_thrs), len(p.recThrs)
            K, A, M, I0 = len(p.catIds), len(p.areaRng), len(p.maxDets), len(p.imgIds)
            precision = -np.ones((T, F, R, K, A, M))
            recall = -np.ones((T, F, K, A, M))
            for k, cat in enumerate(p.catIds):
                cols = range(F) if cat in self.attr_cats else [F - 1]
                for a in range(A):
                    E = [e for e in self.evalImgs[k * A * I0 + a * I0:(k * A + a + 1) * I0] if e is not None]
                    if not E:
                        continue
                    for m, max_det in enumerate(p.maxDets):
                        scores = np.concatenate([e["dtScores"][:max_det] for e in E])
                        inds = np.argsort(-scores, kind="mergesort")
                        dtm = np.concatenate([e["dtMatches"][:, :, :max_det] for e in E], axis=2)[:, :, inds]
                        dtig = np.concatenate([e["dtIgnore"][:, :, :max_det] for e in E], axis=2)[:, :, inds]
                        gtig = np.concatenate([e["gtIgnore"] for e in E])
                        npig = np.count_nonzero(gtig == 0)
                        if npig == 0:
                            continue
                        tps = np.logical_and(dtm, np.logical_not(dtig))
                        fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
                        tp_sum = np.cumsum(tps, axis=2).astype(float)
                        fp_sum = np.cumsum(fps, axis=2).astype(float)
                        for t in range(T):
                            for j, f in enumerate(cols):
                                src = j if len(cols) > 1 else 0  # a category without attributes has one column
                                tp, fp = tp_sum[t, src], fp_sum[t, src]
                                nd = len(tp)
                                rc = tp / npig
                                pr = tp / (fp + tp + np.spacing(1))
                                recall[t, f, k, a, m] = rc[-1] if nd else 0
                                pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                                idx = np.searchsorted(rc, p.recThrs, side="left")
                                q = np.zeros(R)
                                ok = idx < nd
                                q[ok] = pr[idx[ok]]
                                precision[t, f, :, k, a, m] = q
            self.eval = {"precision": precision, "recall": recall}

        # -- summaries ------------------------------------------------------------------
        def _columns(self, arr: np.ndarray, cat_axis: int, f1: bool, f1_thr: float | None) -> np.ndarray:
            """Select (T, ., ., K', ...) "category columns" as the official summaries do."""
            p = self.params
            F = len(self.f1_thrs)
            parts = []
            for k, cat in enumerate(p.catIds):
                take = np.take(arr, [k], axis=cat_axis)
                if not f1 or cat not in self.attr_cats:
                    parts.append(take[:, [F - 1]])
                elif f1_thr is not None:
                    parts.append(take[:, np.where(np.isclose(self.f1_thrs, f1_thr))[0]])
                else:
                    parts.extend(take[:, [fi]] for fi in range(F - 1))
            return np.concatenate(parts, axis=cat_axis)

        def summary(self, kind: str, *, f1: bool, iou_thr: float | None = None, f1_thr: float | None = None,
                    area: str = "all", max_dets: int = 100) -> float:
            p = self.params
            a = p.areaRngLbl.index(area)
            m = p.maxDets.index(max_dets)
            arr = self.eval["precision"] if kind == "ap" else self.eval["recall"]
            cat_axis = 3 if kind == "ap" else 2
            t = np.where(np.isclose(p.iouThrs, iou_thr))[0] if iou_thr is not None else np.arange(len(p.iouThrs) - 1)
            s = self._columns(arr[t], cat_axis, f1, f1_thr)
            s = s[..., a, m]
            valid = s[s > -1]
            return float(np.mean(valid)) if valid.size else -1.0

    return FashionpediaCOCOeval


def _coco(dataset: dict):
    from pycocotools.coco import COCO

    with _quiet():
        c = COCO()
        c.dataset = dataset
        c.createIndex()
    return c


def _results_for(results: Sequence[Mapping[str, Any]], iou_type: str) -> list[dict]:
    # pycocotools' loadRes takes a result as a box result when it has a "bbox" (and then replaces
    # its mask by the box): each evaluation gets only its own geometry
    drop = "bbox" if iou_type == "segm" else "segmentation"
    return [{k: copy.deepcopy(v) for k, v in r.items() if k != drop} for r in results]


def fashionpedia_eval(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], iou_type: str = "segm", *,
                      attribute_categories: Iterable[int] | None = None) -> dict[str, float]:
    """Fashionpedia AP/AR of COCO-format ``results`` (with ``attribute_ids``) against ``gt``.

    ``gt``: the annotation file's content (``images``, ``annotations`` with ``attribute_ids``,
    ``categories``, ``attributes``); ``iou_type``: ``segm`` (masks from each result's
    ``segmentation``) or ``bbox``; ``attribute_categories``: category ids scored with the F1
    constraint (default: the official Fashionpedia list). Every image of ``gt`` is evaluated.
    Returns the keys listed in the module docstring, with prefix ``mask`` or ``box``.
    """
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}, got {iou_type!r}")
    attr_cats = set(FASHIONPEDIA_ATTRIBUTE_CATEGORIES if attribute_categories is None else attribute_categories)
    attr_index = {int(a["id"]): i for i, a in enumerate(gt.get("attributes") or [])}
    data = {"images": list(gt["images"]), "categories": copy.deepcopy(list(gt["categories"])),
            "annotations": [dict(a) for a in gt["annotations"]]}  # COCOeval writes into annotations
    for a in data["annotations"]:
        a.setdefault("iscrowd", 0)
    coco_gt = _coco(data)
    dets = _results_for(results, iou_type)
    for i, r in enumerate(dets):
        for att in r.get("attribute_ids") or ():
            if att not in attr_index:
                raise ValueError(f"result #{i}: attribute id {att!r} is not in the ground truth's attributes")
    with _quiet():
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:
            coco_dt = _coco({"images": list(data["images"]), "categories": copy.deepcopy(data["categories"]),
                             "annotations": []})
    ev = _cocoeval_class()(coco_gt, coco_dt, iou_type, attr_cats, attr_index)
    ev.params.imgIds = sorted(coco_gt.getImgIds())
    with _quiet():
        ev.evaluate()
    ev.accumulate_fp()
    prefix = "mask" if iou_type == "segm" else "box"
    out: dict[str, float] = {}
    for f1, suffix in ((False, ""), (True, "_f1")):
        out[f"{prefix}_AP{suffix}"] = ev.summary("ap", f1=f1)
        out[f"{prefix}_AP50{suffix}"] = ev.summary("ap", f1=f1, iou_thr=0.5)
        out[f"{prefix}_AP75{suffix}"] = ev.summary("ap", f1=f1, iou_thr=0.75)
        for area in ("small", "medium", "large"):
            out[f"{prefix}_AP{area[0]}{suffix}"] = ev.summary("ap", f1=f1, area=area)
        for md in ev.params.maxDets:
            out[f"{prefix}_AR{md}{suffix}"] = ev.summary("ar", f1=f1, max_dets=md)
    for f1_thr in (0.5, 0.75):
        out[f"{prefix}_AP_f1_F1{int(f1_thr * 100)}"] = ev.summary("ap", f1=True, f1_thr=f1_thr)
    return out


def fashionpedia_metrics(gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], *,
                         attribute_categories: Iterable[int] | None = None) -> dict[str, float]:
    """Mask and box evaluation together (box AP needs each result's ``bbox``; results without one
    get the tight box of their mask, as pycocotools' ``loadRes`` does for mask results)."""
    from pycocotools import mask as mask_utils

    cats = None if attribute_categories is None else list(attribute_categories)
    out = fashionpedia_eval(gt, results, "segm", attribute_categories=cats)
    boxed = []
    for r in results:
        if "bbox" not in r and "segmentation" in r:
            r = {**r, "bbox": [float(v) for v in mask_utils.toBbox(_rle(r["segmentation"], gt, r))]}
        boxed.append(r)
    out.update(fashionpedia_eval(gt, boxed, "bbox", attribute_categories=cats))
    return out


def _rle(seg: Any, gt: Mapping[str, Any], r: Mapping[str, Any]) -> dict:
    from pycocotools import mask as mask_utils

    if isinstance(seg, dict) and isinstance(seg.get("counts"), str):
        return {"size": seg["size"], "counts": seg["counts"].encode()}
    if isinstance(seg, dict):
        return seg
    img = next(i for i in gt["images"] if i["id"] == r["image_id"])
    return mask_utils.merge(mask_utils.frPyObjects(seg, img["height"], img["width"]))
