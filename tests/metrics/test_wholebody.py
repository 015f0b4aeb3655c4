"""COCO-WholeBody per-part AP/AR against an independent xtcocotools-style evaluation:
pycocotools' COCOeval on each part sliced out by hand, with the part's sigmas."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from hcbench.data.types import DataFormatError
from hcbench.metrics.pose import BACKENDS
from hcbench.metrics.wholebody import PART_NAMES, SIGMAS, STATS, WHOLEBODY_SIGMAS, wholebody_ap

# COCO-WholeBody's published per-part sigmas (evaluation/myeval_wholebody.py, as xtcocotools'
# wholebody demo lists them), transcribed independently of the module under test
PUBLISHED = {
    "body": [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089],
    "foot": [.068, .066, .066, .092, .094, .094],
    "face": [.042, .043, .044, .043, .040, .035, .031, .025, .020, .023, .029, .032, .037, .038, .043, .041, .045,
             .013, .012, .011, .011, .012, .012, .011, .011, .013, .015, .009, .007, .007, .007, .012, .009, .008,
             .016, .010, .017, .011, .009, .011, .009, .007, .013, .008, .011, .012, .010, .034, .008, .008, .009,
             .008, .008, .007, .010, .008, .009, .009, .009, .007, .007, .008, .011, .008, .008, .008, .01, .008],
    "hand": [.029, .022, .035, .037, .047, .026, .025, .024, .035, .018, .024, .022, .026, .017, .021, .021, .032,
             .02, .019, .022, .031],
}
KEYS = {"body": ("keypoints", 0, 17), "foot": ("foot_kpts", 17, 23), "face": ("face_kpts", 23, 91),
        "lefthand": ("lefthand_kpts", 91, 112), "righthand": ("righthand_kpts", 112, 133)}


def test_sigmas_are_the_published_ones():
    assert list(SIGMAS["body"]) == PUBLISHED["body"] and list(SIGMAS["foot"]) == PUBLISHED["foot"]
    assert list(SIGMAS["face"]) == PUBLISHED["face"] and len(PUBLISHED["face"]) == 68
    assert list(SIGMAS["lefthand"]) == list(SIGMAS["righthand"]) == PUBLISHED["hand"]
    assert list(WHOLEBODY_SIGMAS) == (PUBLISHED["body"] + PUBLISHED["foot"] + PUBLISHED["face"]
                                      + PUBLISHED["hand"] * 2)
    assert len(WHOLEBODY_SIGMAS) == 133


def _scene(seed: int, n_img: int = 6):
    """A whole-body ground truth with unlabelled parts, crowds and persons of all sizes, and
    noisy results (some missing, some extra, one part with zero confidences)."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    aid = 0
    for img in range(1, n_img + 1):
        images.append({"id": img, "file_name": f"{img}.jpg", "width": 640, "height": 480})
        for _ in range(int(rng.integers(1, 5))):
            aid += 1
            scale = float(rng.choice([20, 60, 150]))
            x0, y0 = rng.uniform(0, 300, 2)
            kp = np.zeros((133, 3))
            kp[:, 0] = x0 + rng.uniform(0, scale, 133)
            kp[:, 1] = y0 + rng.uniform(0, 2 * scale, 133)
            kp[:, 2] = rng.choice([0, 1, 2], 133, p=[0.25, 0.25, 0.5])
            for part in ("foot", "face", "lefthand", "righthand"):
                if rng.random() < 0.3:  # a part not annotated at all
                    s, e = KEYS[part][1:]
                    kp[s:e] = 0
            kp[kp[:, 2] == 0, :2] = 0
            box = [float(x0), float(y0), scale, 2 * scale]
            ann = {"id": aid, "image_id": img, "category_id": 1, "bbox": box, "area": float(scale * scale * 1.3),
                   "iscrowd": int(rng.random() < 0.08), "num_keypoints": int((kp[:17, 2] > 0).sum())}
            for key, s, e in KEYS.values():
                ann[key] = kp[s:e].reshape(-1).tolist()
            anns.append(ann)
            if rng.random() < 0.85:
                pred = kp.copy()
                pred[:, :2] += rng.normal(0, scale * 0.06, (133, 2))
                lab = pred[:, 2] > 0
                pred[~lab, :2] = rng.uniform(0, 400, (int((~lab).sum()), 2))
                pred[:, 2] = rng.uniform(0.05, 1, 133)
                if rng.random() < 0.2:
                    pred[112:133, 2] = 0  # no confident right-hand keypoint: dropped for that part
                results.append({"image_id": img, "category_id": 1, "keypoints": pred.reshape(-1).tolist(),
                                "score": float(rng.uniform(0.2, 1))})
        for _ in range(int(rng.integers(0, 2))):  # false positives
            pred = np.zeros((133, 3))
            pred[:, :2] = rng.uniform(0, 600, (133, 2))
            pred[:, 2] = rng.uniform(0.05, 1, 133)
            results.append({"image_id": img, "category_id": 1, "keypoints": pred.reshape(-1).tolist(),
                            "score": float(rng.uniform(0, 1))})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": [f"k{i}" for i in
                                                                                                  range(17)]}]}
    return gt, results


def _reference(gt: dict, results: list[dict], part: str) -> np.ndarray:
    """xtcocotools COCOeval(iouType='keypoints_<part>', use_area=True) emulated on pycocotools."""
    sl = slice(*KEYS[part][1:]) if part != "wholebody" else slice(0, 133)
    sig = np.array(PUBLISHED["body"] + PUBLISHED["foot"] + PUBLISHED["face"] + PUBLISHED["hand"] * 2)[sl]
    g = copy.deepcopy(gt)
    for a in g["annotations"]:
        full = np.concatenate([np.asarray(a[KEYS[p][0]], float).reshape(-1, 3) for p in KEYS])
        a["keypoints"] = full[sl].reshape(-1).tolist()
        a["num_keypoints"] = int((full[sl, 2] > 0).sum())
    g["categories"] = [{**g["categories"][0], "keypoints": [str(i) for i in range(sl.stop - sl.start)]}]
    dts = []
    for r in results:
        full = np.asarray(r["keypoints"], float).reshape(133, 3)
        if not (full[sl, 2] > 0).any():
            continue
        x, y = full[:17, 0], full[:17, 1]
        dts.append({"image_id": r["image_id"], "category_id": 1, "keypoints": full[sl].reshape(-1).tolist(),
                    "score": r["score"], "id": len(dts) + 1, "iscrowd": 0,
                    "area": float((x.max() - x.min()) * (y.max() - y.min()))})  # body extent, as xtcocotools
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = g
        cg.createIndex()
        cd = COCO()
        cd.dataset = {"images": g["images"], "categories": g["categories"], "annotations": dts}
        cd.createIndex()
        ev = COCOeval(cg, cd, "keypoints")
        ev.params.kpt_oks_sigmas = sig
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:10], float)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_part_ap_equals_sliced_cocoeval(seed, backend):
    gt, results = _scene(seed)
    got = wholebody_ap(gt, results, backend=backend)
    for part in PART_NAMES:
        ref = _reference(gt, results, part)
        mine = np.array([got[f"{part}_{k}"] for k in STATS])
        np.testing.assert_allclose(mine, ref, rtol=0, atol=1e-9, err_msg=part)
    assert got["AP"] == got["wholebody_AP"] and got["AR"] == got["wholebody_AR"]
    assert 0 < got["body_AP"] < 1  # the scene is neither trivial nor hopeless


def test_split_result_layout_and_perfect_predictions():
    gt, _ = _scene(3)
    perfect = []
    for a in gt["annotations"]:
        res = {"image_id": a["image_id"], "category_id": 1, "score": 1.0}
        for key, _, _ in KEYS.values():
            kp = np.asarray(a[key], float).reshape(-1, 3)
            # confident where the part is annotated; an unannotated part gets zero confidence (a
            # confident guess there is a false positive, as in the official evaluation)
            kp[:, 2] = float((kp[:, 2] > 0).any())
            res[key] = kp.reshape(-1).tolist()
        perfect.append(res)
    got = wholebody_ap(gt, perfect)
    for part in PART_NAMES:
        assert got[f"{part}_AP"] == 1.0 and got[f"{part}_AR"] == 1.0, part
    # a part score replaces the instance score for that part only
    worse = [{**r, "foot_score": 0.0} for r in perfect]
    assert wholebody_ap(gt, worse)["foot_AP"] == 1.0  # all tied: ranking unchanged


def test_bad_inputs_name_the_record():
    gt, results = _scene(4)
    bad = copy.deepcopy(gt)
    bad["annotations"][1]["face_kpts"] = [0.0] * 10
    with pytest.raises(DataFormatError, match=r"annotations\[1\].*face_kpts.*10 values"):
        wholebody_ap(bad, results)
    with pytest.raises(DataFormatError, match="keypoint values"):
        wholebody_ap(gt, [{**results[0], "keypoints": [0.0] * 12}])
