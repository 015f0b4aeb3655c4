"""OKS AP against direct pycocotools / faster-coco-eval calls on the real sample files and random
cases; the CrowdPose variant against faster-coco-eval's ``keypoints_crowd``; PCKh by hand."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcbench.data.types import DataFormatError
from hcbench.metrics.pose import COCO_KEYS, SIGMAS, keypoint_ap, pckh

SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "real-samples"


def _sample(rel: str) -> dict:
    path = SAMPLES / rel
    if not path.exists():
        pytest.skip(f"real sample {path} not present (expected tests/real-samples in the repository)")
    return json.loads(path.read_text())


# --------------------------------------------------------------------------- references
def pycocotools_stats(gt: dict, results: list[dict], sigmas) -> np.ndarray:
    """The plain pycocotools recipe, written out independently of hcbench."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = copy.deepcopy(gt)
        coco.createIndex()
        dt = coco.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = np.array(sigmas)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.array(ev.stats)


def faster_eval(gt: dict, results: list[dict], sigmas, iou_type="keypoints", use_area=True):
    from faster_coco_eval import COCO, COCOeval_faster

    coco = COCO(copy.deepcopy(gt))
    dt = coco.loadRes(copy.deepcopy(results))
    ev = COCOeval_faster(coco, dt, iou_type, kpt_oks_sigmas=list(sigmas), use_area=use_area,
                         print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


def perturb(gt: dict, seed: int, noise: float) -> list[dict]:
    """Predictions from GT: jittered keypoints (scaled by person size), random scores, one person
    dropped and one false positive added."""
    rng = np.random.default_rng(seed)
    out = []
    anns = [a for a in gt["annotations"] if a.get("num_keypoints", 1) > 0]
    for a in anns[1:]:
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        scale = np.sqrt(a["bbox"][2] * a["bbox"][3])
        kp[:, :2] += rng.normal(0, noise * scale, (len(kp), 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, len(kp))
        out.append({"image_id": a["image_id"], "category_id": a["category_id"],
                    "keypoints": kp.ravel().tolist(), "score": float(rng.uniform(0.05, 1))})
    fp = np.asarray(anns[0]["keypoints"], float).reshape(-1, 3)
    fp[:, :2] += 200.0
    fp[:, 2] = 0.5
    out.append({"image_id": anns[0]["image_id"], "category_id": 1, "keypoints": fp.ravel().tolist(),
                "score": 0.99})
    return out


def with_area_proxy(gt: dict) -> dict:
    gt = copy.deepcopy(gt)
    for a in gt["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
        a.setdefault("iscrowd", 0)
    return gt


# --------------------------------------------------------------------------- real samples
def test_sigma_tables():
    assert {k: len(v) for k, v in SIGMAS.items()} == {"coco": 17, "aic": 14, "crowdpose": 14, "mpii": 16}
    assert SIGMAS["coco"][0] == 0.026 and SIGMAS["coco"][11] == 0.107
    assert SIGMAS["aic"][0] == 0.01388152 and SIGMAS["aic"][-1] == 0.01236173
    assert SIGMAS["crowdpose"][-2:] == (0.079, 0.079)


@pytest.mark.parametrize("seed,noise", [(0, 0.01), (1, 0.03), (2, 0.08)])
def test_coco_sample_equals_pycocotools_and_faster(seed, noise):
    gt = _sample("coco/test_coco.json")
    res = perturb(gt, seed, noise)
    ours = keypoint_ap(gt, res)
    ref = pycocotools_stats(gt, res, SIGMAS["coco"])
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], ref[:10], rtol=0, atol=1e-9)
    fast = keypoint_ap(gt, res, backend="faster-coco-eval")
    np.testing.assert_allclose([fast[k] for k in COCO_KEYS], ref[:10], rtol=0, atol=1e-6)
    assert 0 < ours["AP"] < 1  # the perturbation makes a non-trivial case


def test_coco_sample_perfect_and_empty():
    gt = _sample("coco/test_coco.json")
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    assert keypoint_ap(gt, perfect)["AP"] == pytest.approx(1.0, abs=1e-12)
    assert keypoint_ap(gt, []) == {k: 0.0 for k in COCO_KEYS}
    assert keypoint_ap(gt, [], backend="faster-coco-eval") == {k: 0.0 for k in COCO_KEYS}


@pytest.mark.parametrize("seed", [0, 1])
def test_aic_sample_uses_aic_sigmas_and_box_area(seed):
    gt = _sample("aic/test_aic.json")  # no 'area', no 'iscrowd': the 0.53 w h rule applies
    res = perturb(gt, seed, 0.02)
    ours = keypoint_ap(gt, res, sigmas="aic")
    ref = pycocotools_stats(with_area_proxy(gt), res, SIGMAS["aic"])
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], ref[:10], rtol=0, atol=1e-9)
    # an independent implementation of the same OKS scale: faster-coco-eval's use_area=False (which
    # applies it to OKS only, not to the area ranges, so compare the all-area numbers)
    fast = faster_eval(gt, res, SIGMAS["aic"], use_area=False).stats
    all_area = [0, 1, 2, 5, 6, 7]
    np.testing.assert_allclose([ours[COCO_KEYS[i]] for i in all_area], fast[all_area], rtol=0, atol=1e-6)
    # COCO sigmas would give other numbers: the choice matters
    assert keypoint_ap(gt, res, sigmas=SIGMAS["crowdpose"])["AP"] != ours["AP"]


def test_crowdpose_sample_crowd_variant():
    gt = _sample("crowdpose/test_crowdpose.json")
    res = perturb(gt, 3, 0.03)
    ours = keypoint_ap(gt, res, crowd=True)
    ref = faster_eval(gt, res, SIGMAS["crowdpose"], "keypoints_crowd", use_area=False).stats_as_dict
    assert ours["AP"] == pytest.approx(ref["AP_all"], abs=1e-6)
    assert ours["AR75"] == pytest.approx(ref["AR_75"], abs=1e-6)
    # both images have crowdIndex 0.33/0.39: all "medium", the other splits are empty (-1)
    assert ours["APeasy"] == -1.0 and ours["APhard"] == -1.0
    assert ours["APmedium"] == pytest.approx(ref["AP_medium"], abs=5e-5)  # reference rounds to 4 places
    assert ours["APmedium"] == pytest.approx(ours["AP"], abs=1e-12)


def test_crowd_index_bins():
    gt = _sample("crowdpose/test_crowdpose.json")
    gt["images"][0]["crowdIndex"] = 0.05  # easy
    gt["images"][1]["crowdIndex"] = 0.9  # hard
    res = perturb(gt, 4, 0.02)
    for backend in ("pycocotools", "faster-coco-eval"):
        ours = keypoint_ap(gt, res, crowd=True, backend=backend)
        ref = faster_eval(gt, res, SIGMAS["crowdpose"], "keypoints_crowd", use_area=False).stats_as_dict
        for a, b in (("APeasy", "AP_easy"), ("APmedium", "AP_medium"), ("APhard", "AP_hard")):
            assert ours[a] == pytest.approx(ref[b], abs=5e-5), (backend, a)
        assert ours["APmedium"] == -1.0
        # each split equals AP computed on that image alone
        only_easy = copy.deepcopy(gt)
        keep = {gt["images"][0]["id"]}
        only_easy["images"] = [i for i in gt["images"] if i["id"] in keep]
        only_easy["annotations"] = [a for a in gt["annotations"] if a["image_id"] in keep]
        sub = keypoint_ap(only_easy, [r for r in res if r["image_id"] in keep], crowd=True, backend=backend)
        assert ours["APeasy"] == pytest.approx(sub["AP"], abs=1e-12)


# --------------------------------------------------------------------------- random cases
@st.composite
def coco_case(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    k = 17
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(draw(st.integers(1, 3)))]
    anns, res = [], []
    for img in images:
        for _ in range(draw(st.integers(0, 4))):
            x, y = rng.uniform(0, 400, 2)
            w, h = rng.uniform(10, 200, 2)
            kp = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k), rng.integers(0, 3, k)]
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": 1, "iscrowd": 0,
                         "bbox": [x, y, w, h], "area": float(w * h * rng.uniform(0.3, 1.0)),
                         "keypoints": kp.ravel().tolist(), "num_keypoints": int((kp[:, 2] > 0).sum())})
            if rng.uniform() < 0.8:
                p = kp.copy()
                p[:, :2] += rng.normal(0, rng.uniform(0.5, 15), (k, 2))
                p[:, 2] = rng.uniform(0, 1, k)
                res.append({"image_id": img["id"], "category_id": 1, "keypoints": p.ravel().tolist(),
                            "score": float(rng.uniform())})
        for _ in range(draw(st.integers(0, 2))):  # pure false positives
            p = np.c_[rng.uniform(0, 640, k), rng.uniform(0, 480, k), np.ones(k)]
            res.append({"image_id": img["id"], "category_id": 1, "keypoints": p.ravel().tolist(),
                        "score": float(rng.uniform())})
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(k)]}]}
    return gt, res


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(coco_case())
def test_random_cases_equal_pycocotools(case):
    gt, res = case
    if not res:
        return
    ours = keypoint_ap(gt, res)
    ref = pycocotools_stats(gt, res, SIGMAS["coco"])
    np.testing.assert_allclose([ours[k] for k in COCO_KEYS], ref[:10], rtol=0, atol=1e-9)
    fast = keypoint_ap(gt, res, backend="faster-coco-eval")
    np.testing.assert_allclose([fast[k] for k in COCO_KEYS], ref[:10], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- errors
def test_bad_results_name_the_record():
    gt = _sample("coco/test_coco.json")
    res = perturb(gt, 0, 0.01)
    bad = copy.deepcopy(res)
    bad[2]["image_id"] = 123456789
    with pytest.raises(DataFormatError, match=r"\[record 2\].*unknown image id 123456789"):
        keypoint_ap(gt, bad)
    bad = copy.deepcopy(res)
    bad[1]["keypoints"] = bad[1]["keypoints"][:-3]
    with pytest.raises(DataFormatError, match=r"\[record 1\].*48 keypoint values, expected 51"):
        keypoint_ap(gt, bad)
    bad = copy.deepcopy(res)
    bad[0]["score"] = float("nan")
    with pytest.raises(DataFormatError, match=r"\[record 0\].*NaN"):
        keypoint_ap(gt, bad)
    with pytest.raises(ValueError, match="14 sigmas for 17 keypoints"):
        keypoint_ap(gt, res, sigmas="aic")
    with pytest.raises(ValueError, match="name the OKS sigmas"):
        keypoint_ap(_sample("aic/test_aic.json"), [])


# --------------------------------------------------------------------------- PCKh
def test_pckh_hand_computed():
    n, k = 2, 16
    gt = np.zeros((n, k, 2))
    pred = np.zeros((n, k, 2))
    head = np.array([10.0, 20.0])  # thresholds: 5 px and 10 px at 0.5; 1 px and 2 px at 0.1
    # person 0: joint j is off by j px along x; person 1: off by 2 px everywhere
    pred[0, :, 0] = np.arange(k)
    pred[1, :, 1] = 2.0
    vis = np.ones((n, k), bool)
    vis[1, 3] = False  # l_hip of person 1 not annotated
    out = pckh(pred, gt, vis, head)
    # person 0 correct at 0.5 for joints 0..5 (<= 5 px); person 1 correct everywhere (2 <= 10)
    # pooled over joints except pelvis (6) and thorax (7): person 0 -> 6 of 14, person 1 -> 13 of 13
    assert out["PCKh"] == pytest.approx((6 + 13) / (14 + 13))
    # at 0.1: person 0 joints 0, 1 (<= 1 px); person 1: 2 <= 2 -> all 13
    assert out["PCKh@0.1"] == pytest.approx((2 + 13) / 27)
    pj = out["PCKh_per_joint"]
    assert pj[0] == 1.0 and pj[5] == 1.0 and pj[9] == 0.5 and pj[3] == 1.0  # joint 3: only person 0 counts
    assert out["PCKh_Head"] == 0.5  # head_top: person 0 off by 9 px > 5
    assert out["PCKh_Ankle"] == 1.0 and out["PCKh_Wrist"] == 0.5
    # a person without a head size is skipped entirely
    assert pckh(pred, gt, vis, np.array([10.0, 0.0]))["PCKh"] == pytest.approx(6 / 14)
    # any K: every joint counts unless excluded
    assert pckh(pred[:, :4], gt[:, :4], vis[:, :4], head)["PCKh"] == pytest.approx(7 / 7)


def test_pckh_shape_errors():
    with pytest.raises(ValueError, match="must both be"):
        pckh(np.zeros((2, 16, 2)), np.zeros((2, 15, 2)), np.ones((2, 16)), np.ones(2))
