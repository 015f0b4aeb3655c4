"""Fashionpedia evaluation: IoU-only AP equals pycocotools' COCOeval, IoU + attribute-F1 on hand-worked
cases, the official binary-macro F1, and (when the official package is importable) the official FPEval."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hcbench.metrics.fashionpedia import F1_THRESHOLDS, attribute_f1, fashionpedia_eval, fashionpedia_metrics

W = H = 100
ATTRS = [{"id": 100 + i, "name": f"att{i}"} for i in range(10)]  # ids need not be contiguous
CATS = [{"id": 10, "name": "dress"}, {"id": 23, "name": "shoe"}]


def _rle(x: float, y: float, w: float, h: float) -> dict:
    r = mask_utils.merge(mask_utils.frPyObjects([[x, y, x + w, y, x + w, y + h, x, y + h]], H, W))
    return {"size": [H, W], "counts": r["counts"].decode()}


def _gt(anns: list[dict], attributes=ATTRS) -> dict:
    out = []
    for i, a in enumerate(anns, start=1):
        rle = _rle(*a["rect"])
        rec = {"id": i, "image_id": a.get("image_id", 1), "category_id": a["cat"], "segmentation": rle,
               "area": float(mask_utils.area({**rle, "counts": rle["counts"].encode()})),
               "bbox": [float(v) for v in a["rect"]], "iscrowd": 0, "attribute_ids": a.get("atts", [])}
        out.append(rec)
    ids = sorted({a.get("image_id", 1) for a in anns} | {1})
    return {"images": [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in ids],
            "annotations": out, "categories": CATS, "attributes": attributes}


def _det(rect, cat: int, atts, score: float = 0.9, image_id: int = 1) -> dict:
    return {"image_id": image_id, "category_id": cat, "segmentation": _rle(*rect), "bbox": [float(v) for v in rect],
            "score": score, "attribute_ids": list(atts)}


# --------------------------------------------------------------------------- attribute F1
def _f1_reference(g: set[int], d: set[int], n: int) -> float:
    """scikit-learn's f1_score(y_true, y_pred, average="macro") on two 0/1 vectors, by definition:
    per label present in either vector, precision/recall/F1 of that label, then the mean."""
    y_true = [int(i in g) for i in range(n)]
    y_pred = [int(i in d) for i in range(n)]
    scores = []
    for label in sorted(set(y_true) | set(y_pred)):
        tp = sum(t == label and p == label for t, p in zip(y_true, y_pred, strict=True))
        pred = sum(p == label for p in y_pred)
        true = sum(t == label for t in y_true)
        prec = tp / pred if pred else 0.0
        rec = tp / true if true else 0.0
        scores.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return float(np.mean(scores))


@pytest.mark.parametrize(("g", "d", "expected"), [
    ({0, 1}, {0}, (2 / 3 + 16 / 17) / 2),           # 0.8039
    ({0, 1, 2}, {0, 1, 3}, (4 / 6 + 12 / 14) / 2),  # 0.7619
    ({0, 1}, {0, 2}, (1 / 2 + 14 / 16) / 2),        # 0.6875
    ({0}, {1}, (0 + 16 / 18) / 2),                  # 0.4444: absent attributes still count
    (set(), set(), 1.0),                            # only the "absent" label occurs, perfectly
    (set(range(10)), set(range(10)), 1.0),          # only the "present" label occurs
    (set(), {3}, (0 + 18 / 19) / 2),
])
def test_attribute_f1_is_sklearn_binary_macro(g, d, expected):
    gt = np.zeros((1, 10), int)
    dt = np.zeros((1, 10), int)
    gt[0, list(g)] = 1
    dt[0, list(d)] = 1
    got = attribute_f1(gt, dt)[0, 0]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got == pytest.approx(_f1_reference(g, d, 10), abs=1e-12)


def test_attribute_f1_matrix_matches_definition_on_random_sets():
    rng = np.random.default_rng(3)
    gt = (rng.random((5, 12)) < 0.3).astype(int)
    dt = (rng.random((7, 12)) < 0.3).astype(int)
    got = attribute_f1(gt, dt)
    assert got.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            ref = _f1_reference(set(np.flatnonzero(gt[j])), set(np.flatnonzero(dt[i])), 12)
            assert got[i, j] == pytest.approx(ref, abs=1e-12)


# --------------------------------------------------------------------------- IoU + F1, hand-worked
DRESS, SHOE = 10, 23


def _one_dress(pred_atts, gt_atts=(100, 101)):
    gt = _gt([{"rect": (10, 10, 40, 60), "cat": DRESS, "atts": list(gt_atts)}])
    return fashionpedia_eval(gt, [_det((10, 10, 40, 60), DRESS, pred_atts)], "segm", attribute_categories=[DRESS])


@pytest.mark.parametrize(("gt_atts", "pred_atts", "passed"), [
    # F1 0.8039: just above 0.80, below 0.85 -> 7 of the 10 F1 thresholds (0.50 ... 0.80)
    ((100, 101), (100,), 7),
    # F1 0.7619: just above 0.75, below 0.80 -> 6 thresholds
    ((100, 101, 102), (100, 101, 103), 6),
    # F1 0.6875: above 0.65, just below 0.70 -> 4 thresholds
    ((100, 101), (100, 102), 4),
    # F1 0.4444: below 0.50 -> no threshold; the mask is still perfect
    ((100,), (101,), 0),
    ((100, 101), (100, 101), 10),
])
def test_iou_f1_ap_counts_the_f1_thresholds_a_perfect_mask_passes(gt_atts, pred_atts, passed):
    out = _one_dress(pred_atts, gt_atts)
    assert out["mask_AP"] == pytest.approx(1.0)  # IoU only: a perfect mask
    assert out["mask_AP50"] == pytest.approx(1.0)
    # one category with attributes: AP averages its ten F1-threshold columns, each 1 (match) or 0 (miss)
    assert out["mask_AP_f1"] == pytest.approx(passed / 10, abs=1e-12)
    assert out["mask_AP50_f1"] == pytest.approx(passed / 10, abs=1e-12)
    assert out["mask_AP_f1_F150"] == pytest.approx(1.0 if passed >= 1 else 0.0)
    assert out["mask_AP_f1_F175"] == pytest.approx(1.0 if passed >= 6 else 0.0)
    assert out["mask_AR100_f1"] == pytest.approx(passed / 10, abs=1e-12)


def test_category_without_attributes_counts_once_and_ignores_f1():
    gt = _gt([{"rect": (10, 10, 40, 60), "cat": DRESS, "atts": [100, 101]},
              {"rect": (60, 80, 12, 8), "cat": SHOE, "atts": [105]}])
    dets = [_det((10, 10, 40, 60), DRESS, [100]),            # F1 0.8039: 7 of 10 columns
            _det((60, 80, 12, 8), SHOE, [], score=0.8)]      # wrong attributes, but shoes have no F1 constraint
    out = fashionpedia_eval(gt, dets, "segm", attribute_categories=[DRESS])
    assert out["mask_AP"] == pytest.approx(1.0)
    # columns: dress x 10 F1 thresholds (7 ones) + shoe x 1 (IoU only, a one) -> 8 / 11
    assert out["mask_AP_f1"] == pytest.approx(8 / 11, abs=1e-12)
    # with the shoe as an attribute category too, its F1 (0.4737 < 0.5) fails every threshold
    out2 = fashionpedia_eval(gt, dets, "segm", attribute_categories=[DRESS, SHOE])
    assert out2["mask_AP_f1"] == pytest.approx(7 / 20, abs=1e-12)


def test_f1_constraint_changes_which_ground_truth_a_detection_takes():
    # two dresses, the detection overlaps both: IoU 1 with A (wrong attributes), IoU ~0.7 with B
    # (right attributes). IoU only, it takes A; at IoU 0.5 with F1, B (the only one passing F1).
    gt = _gt([{"rect": (10, 10, 40, 60), "cat": DRESS, "atts": [100]},
              {"rect": (10, 28, 40, 60), "cat": DRESS, "atts": [105, 106]}])
    dets = [_det((10, 10, 40, 60), DRESS, [105, 106])]
    out = fashionpedia_eval(gt, dets, "segm", attribute_categories=[DRESS])
    enc = [{**a["segmentation"], "counts": a["segmentation"]["counts"].encode()} for a in gt["annotations"]]
    iou_ab = mask_utils.iou([enc[0]], [enc[1]], [0])[0, 0]  # (60 - 18) / (60 + 18) = 0.538 as drawn
    assert 0.52 < iou_ab < 0.545
    # IoU only: one TP of two GTs at every threshold -> precision 1 up to recall 0.5: 51/101
    assert out["mask_AP"] == pytest.approx(51 / 101, abs=1e-12)
    # IoU 0.5 + F1: A fails F1 (0.4444), B passes at every F1 threshold -> a TP at IoU 0.5 only
    assert out["mask_AP50_f1"] == pytest.approx(51 / 101, abs=1e-12)
    assert out["mask_AP75_f1"] == pytest.approx(0.0)


def test_no_detections_and_unknown_attribute():
    gt = _gt([{"rect": (10, 10, 40, 60), "cat": DRESS, "atts": [100]}])
    out = fashionpedia_eval(gt, [], "segm", attribute_categories=[DRESS])
    assert out["mask_AP"] == 0.0 and out["mask_AP_f1"] == 0.0
    with pytest.raises(ValueError, match="attribute id 999"):
        fashionpedia_eval(gt, [_det((10, 10, 40, 60), DRESS, [999])], "segm")


# --------------------------------------------------------------------------- IoU only == COCOeval
def _random_case(seed: int, constant_attrs: bool = True):
    """Overlapping rectangles and triangles in 12 images, 4 categories, jittered detections."""
    rng = np.random.default_rng(seed)
    cats = [{"id": c, "name": f"c{c}"} for c in (0, 1, 13, 23)]
    attrs = [{"id": a, "name": f"a{a}"} for a in (3, 5, 7, 11, 12, 20)]
    images, anns, res = [], [], []
    for im in range(1, 13):
        images.append({"id": im, "width": 120, "height": 100, "file_name": f"{im}.jpg"})
        for c in (0, 1, 13, 23):
            fixed = sorted(rng.choice([3, 5, 7, 11, 12, 20], size=2, replace=False).tolist())
            for _ in range(int(rng.integers(0, 4))):
                x, y, w, h = rng.uniform(0, 80), rng.uniform(0, 60), rng.uniform(3, 40), rng.uniform(3, 40)
                seg = [[x, y, x + w, y, x + w, y + h, x, y + h]] if rng.random() < 0.5 else \
                    [[x, y, x + w, y + h * 0.3, x + w * 0.5, y + h]]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, 100, 120))
                atts = fixed if constant_attrs else sorted(rng.choice([3, 5, 7, 11], 2, replace=False).tolist())
                anns.append({"id": len(anns) + 1, "image_id": im, "category_id": c, "segmentation": seg,
                             "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                             "iscrowd": 0, "attribute_ids": atts})
                for _ in range(int(rng.integers(0, 3))):
                    dx, dy = rng.normal(0, 4, 2)
                    x2, y2 = x + dx + w * rng.uniform(0.8, 1.2), y + dy + h * rng.uniform(0.8, 1.2)
                    s2 = [[x + dx, y + dy, x2, y + dy, x2, y2, x + dx, y2]] if rng.random() < 0.7 else seg
                    r2 = mask_utils.merge(mask_utils.frPyObjects(s2, 100, 120))
                    res.append({"image_id": im, "category_id": c, "score": float(rng.random()),
                                "segmentation": {"size": [100, 120], "counts": r2["counts"].decode()},
                                "bbox": mask_utils.toBbox(r2).tolist(),
                                "attribute_ids": sorted(rng.choice([3, 5, 7], size=int(rng.integers(0, 3)),
                                                                   replace=False).tolist())})
    return {"images": images, "annotations": anns, "categories": cats, "attributes": attrs}, res


def _cocoeval_stats(gt: dict, res: list[dict], iou_type: str) -> np.ndarray:
    drop = "bbox" if iou_type == "segm" else "segmentation"
    with contextlib.redirect_stdout(io.StringIO()):
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        d = g.loadRes([{k: v for k, v in r.items() if k != drop} for r in copy.deepcopy(res)])
        e = COCOeval(g, d, iou_type)
        e.evaluate()
        e.accumulate()
        e.summarize()
    return e.stats


KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_iou_only_ap_equals_pycocotools(seed, iou_type):
    # attribute sets constant per (image, category): the F1 never breaks a tie between ground
    # truths, so the official matching of the attribute categories is COCO's too
    gt, res = _random_case(seed)
    stats = _cocoeval_stats(gt, res, iou_type)
    prefix = "mask" if iou_type == "segm" else "box"
    for cats in ([], [0, 1, 23]):
        out = fashionpedia_eval(gt, res, iou_type, attribute_categories=cats)
        for k, s in zip(KEYS, stats[:9], strict=True):
            assert abs(out[f"{prefix}_{k}"] - s) < 1e-9, (cats, k, out[f"{prefix}_{k}"], s)
    assert 0.1 < stats[0] < 0.9  # the case is not degenerate


def test_metrics_box_from_mask_when_no_bbox():
    gt, res = _random_case(0)
    no_box = [{k: v for k, v in r.items() if k != "bbox"} for r in res]
    a = fashionpedia_metrics(gt, no_box, attribute_categories=[0])
    b = fashionpedia_metrics(gt, res, attribute_categories=[0])
    # the results' boxes were made as the masks' tight boxes: the same numbers
    assert a["box_AP"] == pytest.approx(b["box_AP"], abs=1e-12)
    assert a["mask_AP_f1"] == pytest.approx(b["mask_AP_f1"], abs=1e-12)
    assert set(a) >= {"mask_AP", "mask_AP_f1", "box_AP", "box_AP_f1", "mask_AP_f1_F175"}


def test_f1_thresholds_are_the_official_ones():
    assert np.allclose(F1_THRESHOLDS, np.arange(10) * 0.05 + 0.5)


def test_official_fpeval_when_importable():
    """Cross-check against the official FPEval (needs the `fashionpedia` package and scikit-learn,
    neither an hcbench dependency; numpy >= 1.24 lacks the np.float it uses, shimmed here)."""
    pytest.importorskip("sklearn")
    if not hasattr(np, "float"):
        np.float = float  # type: ignore[attr-defined]  # fashionpedia 1.1 uses the removed alias
    import sys
    import types

    for m in ("skimage", "skimage.io"):  # only used by its visualisation helpers
        sys.modules.setdefault(m, types.ModuleType(m))
    fp = pytest.importorskip("fashionpedia.fp")
    fpe = pytest.importorskip("fashionpedia.fp_eval")
    gt, res = _random_case(2, constant_attrs=False)
    cmap = {0: 0, 1: 1, 13: 2, 23: 3}  # the official code needs ids 0..K-1 (it mixes ids and indices)
    for c in gt["categories"]:
        c["id"] = cmap[c["id"]]
    for a in gt["annotations"]:
        a["category_id"] = cmap[a["category_id"]]
    for r in res:
        r["category_id"] = cmap[r["category_id"]]
    for iou_type, prefix in (("segm", "mask"), ("bbox", "box")):
        drop = "bbox" if iou_type == "segm" else "segmentation"
        with contextlib.redirect_stdout(io.StringIO()):
            g = fp.Fashionpedia()
            g.dataset = copy.deepcopy(gt)
            g.createIndex()
            d = fp.Fashionpedia()
            d.dataset = g.loadRes([{k: v for k, v in r.items() if k != drop} for r in copy.deepcopy(res)]).dataset
            d.createIndex()
            e = fpe.FPEval(g, d, iou_type)
            e.FPParams.catsWithAttributes = [0, 1, 3]
            e.FPParams.catSuperClsIds = [np.arange(0, 2), np.arange(2, 3), np.arange(3, 4)]
            e.run()
        mine = fashionpedia_eval(gt, res, iou_type, attribute_categories=[0, 1, 3])
        pairs = {"AP": "AP_f1", "AP_IOU50": "AP50_f1", "AP_IOU75": "AP75_f1", "APs": "APs_f1", "APm": "APm_f1",
                 "AP_F150": "AP_f1_F150", "AP_F175": "AP_f1_F175", "AR@100": "AR100_f1"}
        for official, key in pairs.items():
            assert mine[f"{prefix}_{key}"] == pytest.approx(e.results[official], abs=1e-12)
        for official, key in {"AP": "AP", "AP_IOU50": "AP50", "AR@10": "AR10"}.items():
            assert mine[f"{prefix}_{key}"] == pytest.approx(e.resultDet[official], abs=1e-12)
