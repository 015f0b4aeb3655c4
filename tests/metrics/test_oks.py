"""The vectorised OKS evaluation against pycocotools' COCOeval on the same inputs: the full
precision/recall arrays bit for bit and the ten stats, on random cases with crowd regions,
persons without keypoints, ``num_keypoints == 0``, every area range, tied scores, duplicate
detections, an annotation id 0, several categories, the box-area proxy and keypoint subsets."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hcbench.metrics.oks import evaluate_oks
from hcbench.metrics.pose import COCO_KEYS, CROWD_KEYS, SIGMAS, keypoint_ap


def reference(gt: dict, res: list[dict], sigmas, img_ids=None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(res))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=float)
        if img_ids is not None:
            ev.params.imgIds = list(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def random_case(seed: int, k: int = 17, cats: tuple[int, ...] = (1,), with_area: bool = True,
                with_bbox: bool = False) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": int(i * 3 + 1)} for i in rng.permutation(int(rng.integers(1, 8)))]
    anns, res = [], []
    aid = int(rng.integers(0, 2))  # an annotation id 0 now and then (pycocotools reads it as "no match")
    for img in images:
        for _ in range(int(rng.integers(0, 6))):
            cat = int(rng.choice(cats))
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(5, 200, 2)  # small, medium and large persons
            kp = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k), rng.integers(0, 3, k)]
            if rng.uniform() < 0.2:
                kp[:, 2] = 0  # no labelled keypoint: OKS against the doubled box
            if rng.uniform() < 0.15:
                kp = np.round(kp)  # integer coordinates: ties between persons
            ann = {"id": aid, "image_id": img["id"], "category_id": cat, "iscrowd": int(rng.uniform() < 0.15),
                   "bbox": [x, y, w, h], "keypoints": kp.ravel().tolist(),
                   "num_keypoints": int((kp[:, 2] > 0).sum())}
            if with_area:
                ann["area"] = float(w * h * rng.uniform(0.3, 1.0))
            if rng.uniform() < 0.1:
                ann["num_keypoints"] = 0
            anns.append(ann)
            aid += 1
            for _ in range(int(rng.integers(0, 3))):
                p = kp.copy()
                p[:, :2] += rng.normal(0, rng.uniform(0.5, 20), (k, 2))
                p[:, 2] = rng.uniform(0, 1, k)
                r = {"image_id": img["id"], "category_id": cat, "keypoints": p.ravel().tolist(),
                     "score": float(rng.choice([0.5, 0.7, rng.uniform()]))}  # tied scores
                res.append(r)
                if rng.uniform() < 0.1:
                    res.append(copy.deepcopy(r))  # an exact duplicate
        for _ in range(int(rng.integers(0, 25))):  # false positives (also past maxDets=20)
            p = np.c_[rng.uniform(0, 640, k), rng.uniform(0, 480, k), np.ones(k)]
            res.append({"image_id": img["id"], "category_id": int(rng.choice(cats)),
                        "keypoints": p.ravel().tolist(), "score": float(rng.uniform())})
    rng.shuffle(anns)
    if with_bbox:
        for r in res:
            r["bbox"] = [float(v) for v in rng.uniform(1, 150, 4)]
    names = [f"k{i}" for i in range(k)]
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"c{c}", "keypoints": names} for c in cats]}
    return gt, res


def assert_same(ours, ev: COCOeval, img_ids=None) -> None:
    precision, recall = ours.precision_recall(img_ids)
    assert np.array_equal(precision, ev.eval["precision"])
    assert np.array_equal(recall, ev.eval["recall"])
    assert np.array_equal(ours.stats(img_ids), ev.stats)


@pytest.mark.parametrize("seed", range(60))
def test_random_cases_bit_identical(seed):
    gt, res = random_case(seed)
    if not res:
        return
    before = copy.deepcopy((gt, res))
    assert_same(evaluate_oks(gt, res, SIGMAS["coco"]), reference(gt, res, SIGMAS["coco"]))
    assert (gt, res) == before  # inputs untouched


@pytest.mark.parametrize("seed", range(8))
def test_several_categories_and_boxes_in_results(seed):
    gt, res = random_case(100 + seed, cats=(1, 3), with_bbox=seed % 2 == 1)
    if not res:
        return
    assert_same(evaluate_oks(gt, res, SIGMAS["coco"]), reference(gt, res, SIGMAS["coco"]))


@pytest.mark.parametrize("seed", range(8))
def test_image_subsets_as_params_imgIds(seed):
    gt, res = random_case(200 + seed)
    if not res:
        return
    ids = [img["id"] for img in gt["images"]][::2]
    assert_same(evaluate_oks(gt, res, SIGMAS["coco"]), reference(gt, res, SIGMAS["coco"], ids), ids)


@pytest.mark.parametrize("seed", range(6))
def test_box_area_proxy_and_other_sigmas(seed):
    gt, res = random_case(300 + seed, k=14, with_area=False)
    if not res:
        return
    ours = evaluate_oks(gt, res, SIGMAS["crowdpose"], use_area=False)
    proxy = copy.deepcopy(gt)
    for a in proxy["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
    assert_same(ours, reference(proxy, res, SIGMAS["crowdpose"]))


@pytest.mark.parametrize("seed", range(4))
def test_keypoint_subset_equals_sliced_files(seed):
    # a part evaluation (as for COCO-WholeBody) equals pycocotools on the part cut out by hand
    gt, res = random_case(400 + seed)
    if not res:
        return
    part = slice(5, 11)
    cut_gt = copy.deepcopy(gt)
    for a in cut_gt["annotations"]:
        a["keypoints"] = a["keypoints"][15:33]
    for c in cut_gt["categories"]:
        c["keypoints"] = c["keypoints"][5:11]
    cut_res = copy.deepcopy(res)
    for r in cut_res:
        kp = np.asarray(r["keypoints"]).reshape(-1, 3)
        # pycocotools takes a result's area from all its keypoints: give it the full extent
        r["bbox"] = [kp[:, 0].min(), kp[:, 1].min(), np.ptp(kp[:, 0]), np.ptp(kp[:, 1])]
        r["keypoints"] = r["keypoints"][15:33]
    sig = np.asarray(SIGMAS["coco"])[part]
    assert_same(evaluate_oks(gt, res, sig, keypoints=part), reference(cut_gt, cut_res, sig))


@pytest.mark.parametrize("seed", range(10))
def test_keypoint_ap_backends_agree(seed):
    gt, res = random_case(500 + seed)
    if not res:
        return
    ours = keypoint_ap(gt, res)
    ref = keypoint_ap(gt, res, backend="pycocotools")
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], [ref[k] for k in COCO_KEYS], rtol=0, atol=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_crowdpose_variant_agrees(seed):
    gt, res = random_case(600 + seed, k=14, with_area=False)
    if not res:
        return
    rng = np.random.default_rng(seed)
    for img in gt["images"]:
        img["crowdIndex"] = float(rng.choice([0.1, 0.5, 0.9]))
    ours = keypoint_ap(gt, res, crowd=True)
    ref = keypoint_ap(gt, res, crowd=True, backend="pycocotools")
    np.testing.assert_allclose([ours[k] for k in CROWD_KEYS], [ref[k] for k in CROWD_KEYS], rtol=0, atol=1e-9)


def test_empty_and_edge_cases():
    gt, res = random_case(7)
    assert keypoint_ap(gt, []) == keypoint_ap(gt, [], backend="pycocotools")
    assert keypoint_ap(gt, [])["AP"] == 0.0
    no_persons = {**gt, "annotations": []}
    assert keypoint_ap(no_persons, res) == {k: -1.0 for k in COCO_KEYS}
    assert_same(evaluate_oks(no_persons, res, SIGMAS["coco"]), reference(no_persons, res, SIGMAS["coco"]))
    with pytest.raises(ValueError, match="unknown backend"):
        keypoint_ap(gt, res, backend="nope")
