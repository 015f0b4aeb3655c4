"""``hcbench score <family>`` end to end through ``hcbench.cli.main``: JSON numbers equal the metric
functions on the same data, and mismatched inputs fail with the file and record named."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hcbench.cli import main
from hcbench.metrics.attributes import attribute_metrics
from hcbench.metrics.detection import crowdhuman_eval
from hcbench.metrics.parsing import ConfusionMatrix, parsing_metrics
from hcbench.metrics.pose import keypoint_ap
from hcbench.metrics.reid import evaluate_reid


def run(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def fails(capsys, *argv, match: str) -> str:
    rc, _, err = run(capsys, *argv)
    assert rc == 2, err
    assert match in err, err
    return err


# --------------------------------------------------------------------------- pose
def jittered_results(gt: dict, seed: int, sd: float) -> list[dict]:
    """COCO keypoint results: every ground-truth person, keypoints moved by N(0, sd) pixels,
    all marked visible, with a random score."""
    rng = np.random.default_rng(seed)
    res = []
    for a in gt["annotations"]:
        kp = np.asarray(a["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, sd, (len(kp), 2))
        kp[:, 2] = 1
        res.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                    "score": float(rng.uniform())})
    return res


def sample_json(real_samples: Path, name: str) -> tuple[Path, dict]:
    """A real sample annotation file and its parsed content; skips when the file is absent."""
    src = real_samples / name
    if not src.exists():
        pytest.skip(f"real sample {src} not present")
    return src, json.loads(src.read_text())


@pytest.fixture
def coco_files(tmp_path, real_samples):
    _, gt = sample_json(real_samples, "coco/test_coco.json")
    res = jittered_results(gt, seed=0, sd=3)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(res))
    return tmp_path / "gt.json", tmp_path / "pred.json", gt, res


def test_pose(capsys, coco_files, tmp_path):
    gt_path, pred_path, gt, res = coco_files
    rc, out, _ = run(capsys, "pose", "--gt", gt_path, "--pred", pred_path)
    assert rc == 0
    assert out == pytest.approx(keypoint_ap(gt, res), abs=1e-12)
    assert list(out) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
    rc, fast, _ = run(capsys, "pose", "--gt", gt_path, "--pred", pred_path, "--backend", "faster-coco-eval")
    assert fast == pytest.approx(out, abs=1e-6)
    # sigmas from a file: COCO's own values give the same numbers
    sig = tmp_path / "sigmas.txt"
    sig.write_text("0.026 0.025 0.025 0.035 0.035 0.079 0.079 0.072 0.072 0.062 0.062 0.107 0.107 "
                   "0.087 0.087 0.089 0.089\n")
    assert run(capsys, "pose", "--gt", gt_path, "--pred", pred_path, "--sigmas", sig)[1] == out


def test_pose_crowdpose_protocol_on_the_real_sample(capsys, tmp_path, real_samples):
    src, gt = sample_json(real_samples, "crowdpose/test_crowdpose.json")
    res = jittered_results(gt, seed=1, sd=2)
    (tmp_path / "pred.json").write_text(json.dumps(res))
    rc, out, _ = run(capsys, "pose", "--gt", src, "--pred", tmp_path / "pred.json", "--sigmas", "crowdpose",
                     "--crowd")
    assert rc == 0
    assert list(out) == ["AP", "AP50", "AP75", "AR", "AR50", "AR75", "APeasy", "APmedium", "APhard"]
    assert out == pytest.approx(keypoint_ap(gt, res, sigmas="crowdpose", crowd=True), abs=1e-12)
    assert 0 < out["AP"] <= 1 and out["APmedium"] == pytest.approx(out["AP"])  # both images have crowdIndex in [0.2, 0.8]
    # --crowd alone takes the CrowdPose sigmas (the COCO default used to override them and fail: 17 vs 14)
    assert run(capsys, "pose", "--gt", src, "--pred", tmp_path / "pred.json", "--crowd")[1] == out
    # the card fixes the whole protocol: crowd AP with the CrowdPose sigmas, no flags needed
    assert run(capsys, "pose", "--card", "crowdpose_pose", "--gt", src, "--pred", tmp_path / "pred.json")[1] == out
    fails(capsys, "pose", "--card", "crowdpose_pose", "--gt", src, "--pred", tmp_path / "pred.json", "--sigmas", "coco",
          match="fixes the protocol")


def test_pose_errors(capsys, coco_files, tmp_path):
    gt_path, pred_path, _, res = coco_files
    bad = tmp_path / "bad.json"
    r = [dict(x) for x in res]
    r[3] = {**r[3], "image_id": 999}
    bad.write_text(json.dumps(r))
    fails(capsys, "pose", "--gt", gt_path, "--pred", bad, match=f"{bad} [record 3]: unknown image id 999")
    r = [dict(x) for x in res]
    r[5] = {**r[5], "keypoints": r[5]["keypoints"][:42]}
    bad.write_text(json.dumps(r))
    fails(capsys, "pose", "--gt", gt_path, "--pred", bad, match="[record 5]: 42 keypoint values, expected 51")
    r = [dict(x) for x in res]
    r[0] = {**r[0], "keypoints": [math.nan] + r[0]["keypoints"][1:]}
    bad.write_text(json.dumps(r))
    fails(capsys, "pose", "--gt", gt_path, "--pred", bad, match="[record 0]: NaN or inf")
    bad.write_text("[{")
    fails(capsys, "pose", "--gt", gt_path, "--pred", bad, match=f"{bad}: not valid JSON")
    fails(capsys, "pose", "--gt", gt_path, "--pred", pred_path, "--sigmas", "aic",
          match="14 OKS sigmas (aic) but")
    fails(capsys, "pose", "--gt", gt_path, "--pred", tmp_path / "nope.json", match="nope.json: no such file")


# --------------------------------------------------------------------------- parsing
def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8), mode="L").save(path)


@pytest.fixture
def parsing_dirs(tmp_path):
    rng = np.random.default_rng(1)
    gts, preds = [], []
    for i, rel in enumerate(["a.png", "sub/b.png", "sub/deeper/c.png"]):
        g = rng.integers(0, 5, (12 + i, 9))
        g[0, :3] = 255
        p = np.where(rng.uniform(size=g.shape) < 0.7, np.where(g == 255, 0, g), rng.integers(0, 6, g.shape))
        _png(tmp_path / "gt" / rel, g)
        _png(tmp_path / "pred" / rel, p)
        gts.append(g)
        preds.append(p)
    return tmp_path / "gt", tmp_path / "pred", gts, preds


def test_parsing(capsys, parsing_dirs):
    gt, pred, gts, preds = parsing_dirs
    rc, out, _ = run(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 7)
    cm = ConfusionMatrix(7)
    for p, g in zip(preds, gts, strict=True):
        cm.update(p, g)
    ref = parsing_metrics(cm)
    assert rc == 0
    assert out["mIoU"] == pytest.approx(ref["mIoU"]) and out["pixel_acc"] == pytest.approx(ref["pixel_acc"])
    assert out["mean_acc"] == pytest.approx(ref["mean_acc"])
    assert out["per_class_iou"][6] is None  # class 6 appears nowhere: undefined, JSON null
    assert out["per_class_iou"][:6] == pytest.approx(ref["per_class_iou"][:6])


def test_parsing_errors(capsys, parsing_dirs):
    gt, pred, gts, _ = parsing_dirs
    (pred / "sub" / "b.png").unlink()
    fails(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 7,
          match=f"{pred / 'sub' / 'b.png'}: missing prediction for ground truth {gt / 'sub' / 'b.png'}")
    _png(pred / "sub" / "b.png", np.zeros((5, 5)))
    fails(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 7,
          match=f"{pred / 'sub' / 'b.png'}: size 5x5 differs")
    _png(pred / "sub" / "b.png", np.full(gts[1].shape, 9))
    fails(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 7, match="predicted label(s) [9]")
    _png(pred / "sub" / "b.png", gts[1].clip(0, 4))
    _png(pred / "extra.png", np.zeros((3, 3)))
    fails(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 7, match="extra.png: prediction without")
    (pred / "extra.png").unlink()
    fails(capsys, "parsing", "--gt", gt, "--pred", pred, "--num-classes", 4,
          match="ground-truth label(s) [4] outside 0..3")


# --------------------------------------------------------------------------- reid
@pytest.fixture
def reid_arrays():
    rng = np.random.default_rng(2)
    c = rng.normal(size=(20, 8))
    gp, qp = rng.integers(0, 20, 150), rng.integers(0, 20, 30)
    return {"query_feats": (c[qp] + rng.normal(size=(30, 8))).astype(np.float32),
            "gallery_feats": (c[gp] + rng.normal(size=(150, 8))).astype(np.float32),
            "query_pids": qp, "gallery_pids": gp,
            "query_camids": rng.integers(0, 3, 30), "gallery_camids": rng.integers(0, 3, 150)}


def test_reid(capsys, reid_arrays, tmp_path):
    path = tmp_path / "feats.npz"
    np.savez(path, **reid_arrays)
    a = reid_arrays
    for metric in ("cosine", "euclidean"):
        rc, out, _ = run(capsys, "reid", "--pred", path, "--metric", metric)
        ref = evaluate_reid(a["query_feats"], a["gallery_feats"], a["query_pids"], a["gallery_pids"],
                            a["query_camids"], a["gallery_camids"], metric=metric)
        assert rc == 0 and out == {k: pytest.approx(ref[k]) for k in ("mAP", "rank1", "rank5", "rank10", "mINP")}


def test_reid_errors(capsys, reid_arrays, tmp_path):
    path = tmp_path / "feats.npz"
    np.savez(path, **{**reid_arrays, "gallery_pids": reid_arrays["gallery_pids"][:-1]})
    fails(capsys, "reid", "--pred", path, match=f"{path}: gallery_pids has shape (149,), expected (150,)")
    np.savez(path, **{k: v for k, v in reid_arrays.items() if k != "query_camids"})
    fails(capsys, "reid", "--pred", path, match="missing array(s) ['query_camids']")
    f = reid_arrays["gallery_feats"].copy()
    f[7, 3] = np.inf
    np.savez(path, **{**reid_arrays, "gallery_feats": f})
    fails(capsys, "reid", "--pred", path, match=f"{path} [record gallery_feats[7, 3]]: NaN or inf in gallery_feats")
    np.savez(path, **{**reid_arrays, "query_pids": np.array([{"x": 1}] * 30, dtype=object)})
    fails(capsys, "reid", "--pred", path, match="object arrays are refused")
    np.savez(path, **{**reid_arrays, "query_feats": reid_arrays["query_feats"][:, :5]})
    fails(capsys, "reid", "--pred", path, match="query_feats dim 5 != gallery_feats dim 8")


# --------------------------------------------------------------------------- attributes
def test_attributes(capsys, tmp_path):
    rng = np.random.default_rng(3)
    g = (rng.uniform(size=(40, 6)) < 0.3).astype(np.uint8)
    s = rng.uniform(size=(40, 6)).astype(np.float32)
    np.save(tmp_path / "gt.npy", g)
    np.save(tmp_path / "scores.npy", s)
    rc, out, _ = run(capsys, "attributes", "--gt", tmp_path / "gt.npy", "--pred", tmp_path / "scores.npy",
                     "--threshold", 0.4)
    ref = attribute_metrics(g, s, 0.4)
    assert rc == 0 and out == {k: pytest.approx(ref[k]) for k in ("mA", "accuracy", "precision", "recall", "F1")}

    np.save(tmp_path / "short.npy", s[:-1])
    fails(capsys, "attributes", "--gt", tmp_path / "gt.npy", "--pred", tmp_path / "short.npy",
          match="short.npy: shape (39, 6) differs from the ground truth's (40, 6)")
    g2 = g.copy()
    g2[5, 2] = 2
    np.save(tmp_path / "gt2.npy", g2)
    fails(capsys, "attributes", "--gt", tmp_path / "gt2.npy", "--pred", tmp_path / "scores.npy",
          match="gt2.npy [record row 5, attribute 2]: label 2 is not 0 or 1")
    s2 = s.copy()
    s2[1, 1] = np.nan
    np.save(tmp_path / "nan.npy", s2)
    fails(capsys, "attributes", "--gt", tmp_path / "gt.npy", "--pred", tmp_path / "nan.npy",
          match="nan.npy [record scores[1, 1]]: NaN or inf in scores")


# --------------------------------------------------------------------------- detection
ODGT = [
    {"ID": "273271,c9db000d5146c15", "gtboxes": [
        {"tag": "person", "fbox": [10, 10, 40, 100], "vbox": [10, 10, 40, 60], "hbox": [20, 10, 10, 10],
         "extra": {"ignore": 0}},
        {"tag": "person", "fbox": [100, 10, 40, 100], "vbox": [100, 10, 40, 100], "hbox": [110, 10, 10, 10],
         "extra": {"ignore": 0}},
        {"tag": "mask", "fbox": [300, 300, 80, 80], "vbox": [300, 300, 80, 80], "hbox": [0, 0, 1, 1],
         "extra": {"ignore": 1}}]},
    {"ID": "284193,faa9000f2678b5e", "gtboxes": [
        {"tag": "person", "fbox": [5, 5, 30, 90], "vbox": [5, 5, 30, 90], "hbox": [10, 5, 10, 10],
         "extra": {"ignore": 0}},
        {"tag": "person", "fbox": [200, 5, 30, 90], "vbox": [200, 5, 30, 90], "hbox": [210, 5, 10, 10],
         "extra": {"ignore": 1}}]},
]


@pytest.fixture
def crowdhuman_files(tmp_path):
    gt = tmp_path / "annotation_val.odgt"
    gt.write_text("".join(json.dumps(r) + "\n" for r in ODGT))
    preds = [{"image_id": ODGT[0]["ID"], "bbox": [11, 10, 40, 100], "score": 0.95},
             {"image_id": ODGT[0]["ID"], "bbox": [310, 310, 40, 40], "score": 0.9},   # on the mask
             {"image_id": ODGT[0]["ID"], "bbox": [500, 10, 40, 100], "score": 0.6},   # false positive
             {"image_id": ODGT[1]["ID"], "bbox": [5, 5, 30, 90], "score": 0.8},
             {"image_id": ODGT[1]["ID"], "bbox": [200, 5, 30, 90], "score": 0.85},   # on an ignored person
             {"image_id": ODGT[0]["ID"], "bbox": [100, 12, 40, 100], "score": 0.3}]
    pred = tmp_path / "dets.json"
    pred.write_text(json.dumps(preds))
    sizes = tmp_path / "sizes.json"  # large enough that clipping changes nothing
    sizes.write_text(json.dumps({r["ID"]: [1000, 1000] for r in ODGT}))
    return gt, pred, preds, sizes


def test_detection(capsys, crowdhuman_files):
    gt, pred, preds, sizes = crowdhuman_files
    rc, out, _ = run(capsys, "detection", "--gt", gt, "--pred", pred, "--sizes", sizes)
    assert rc == 0
    # TP .95, TP .8, FP .6, TP .3 (the two detections on ignore regions are dropped); 3 people, 2 images
    assert out["AP"] == pytest.approx(0 + (1 / 3) * 1 + 0 + (1 / 3) * (2 / 3 + 3 / 4) / 2)
    gts = [{"image_id": ODGT[0]["ID"], "boxes": [[10, 10, 40, 100], [100, 10, 40, 100]],
            "ignore": [[300, 300, 80, 80]]},
           {"image_id": ODGT[1]["ID"], "boxes": [[5, 5, 30, 90]], "ignore": [[200, 5, 30, 90]]}]
    dets = {}
    for p in preds:
        dets.setdefault(p["image_id"], []).append(p["bbox"] + [p["score"]])
    assert out == pytest.approx(crowdhuman_eval(gts, {k: np.array(v) for k, v in dets.items()}))
    # the crowdhuman_det card gives the same protocol
    assert run(capsys, "detection", "--card", "crowdhuman_det", "--gt", gt, "--pred", pred, "--sizes", sizes)[1] == out


def test_detection_clips_to_the_image_never_silently_skips(capsys, tmp_path):
    gt = tmp_path / "annotation_val.odgt"
    gt.write_text(json.dumps({"ID": "img1", "gtboxes": [
        {"tag": "person", "fbox": [-60, 0, 100, 50], "vbox": [0, 0, 40, 50], "hbox": [0, 0, 5, 5],
         "extra": {}}]}) + "\n")
    pred = tmp_path / "dets.json"
    pred.write_text(json.dumps([{"image_id": "img1", "bbox": [0, 0, 40, 50], "score": 0.9}]))
    # no image and no sizes: an error naming the image, never an unclipped score
    err = fails(capsys, "detection", "--gt", gt, "--pred", pred, match="no size for image 'img1'")
    assert str(tmp_path / "Images" / "img1.jpg") in err and "--sizes" in err
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({"img1": [64, 48]}))
    assert run(capsys, "detection", "--gt", gt, "--pred", pred, "--sizes", sizes)[1]["MR-2"] == 0.0  # clipped: a hit
    sizes.write_text(json.dumps({"other": [64, 48]}))
    fails(capsys, "detection", "--gt", gt, "--pred", pred, "--sizes", sizes, match="the sizes file has no entry")
    sizes.write_text(json.dumps({"img1": [64]}))
    fails(capsys, "detection", "--gt", gt, "--pred", pred, "--sizes", sizes, match=f"{sizes} [record img1]: size")
    (tmp_path / "Images").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "Images" / "img1.jpg")
    assert run(capsys, "detection", "--gt", gt, "--pred", pred)[1]["MR-2"] == 0.0  # both clipped: a hit
    # unclipped (the old silent fallback) it would have been a miss: the IoU of the raw boxes is 0.4
    unclipped = crowdhuman_eval([{"image_id": "img1", "boxes": [[-60, 0, 100, 50]], "ignore": []}],
                                {"img1": np.array([[0, 0, 40, 50, 0.9]])})
    assert unclipped["MR-2"] == 1.0


def test_detection_errors(capsys, crowdhuman_files, tmp_path):
    gt, pred, preds, sizes = crowdhuman_files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(preds[:2] + [{**preds[2], "image_id": "nope"}]))
    fails(capsys, "detection", "--gt", gt, "--pred", bad, "--sizes", sizes,
          match=f"{bad} [record 2]: unknown image id 'nope'")
    bad.write_text(json.dumps([{**preds[0], "bbox": [1, 2, 3]}]))
    fails(capsys, "detection", "--gt", gt, "--pred", bad, "--sizes", sizes, match="[record 0]: bbox has 3 values")
    broken = tmp_path / "broken.odgt"
    broken.write_text(json.dumps(ODGT[0]) + "\n{not json\n")
    fails(capsys, "detection", "--gt", broken, "--pred", pred, match=f"{broken} [record line 2]: not JSON")


def test_score_py_holds_no_format_knowledge():
    """score.py delegates to the evaluators: no second odgt parser, ReID layout or metric list."""
    src = (Path(__file__).resolve().parents[1] / "hcbench" / "score.py").read_text()
    for word in ("odgt", "gtboxes", "query_feats", "rank1", "mINP", "np.load"):
        assert word not in src, word
