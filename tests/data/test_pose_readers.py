"""Pose readers on the real sample files, on written-then-read synthetic files, and on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from hcbench.data.cards import load_dataset_card
from hcbench.data.readers.coco import read_coco_keypoints, write_coco_keypoints
from hcbench.data.readers.mpii import (
    mpii_record,
    read_head_sizes,
    read_mpii_json,
    write_mpii_head_boxes,
    write_mpii_json,
)
from hcbench.data.types import DataFormatError, PoseInstance
from hcbench.registry import DATASETS

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "real-samples"
CARDS = REPO / "datasets"
POSE_CARDS = ["coco", "mpii", "aic", "crowdpose", "ochuman", "mhp"]

needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real samples not found at {SAMPLES}")


def meta(name: str):
    return load_dataset_card(CARDS / f"{name}.yaml").meta()


def read_split(name: str, split: str, root: Path, limit: int | None = None):
    """What ``hcbench.data.cards.read_split`` does, with this card only (other cards may be in flux)."""
    card = load_dataset_card(CARDS / f"{name}.yaml")
    return DATASETS.get(card.format)(root, split, card, limit=limit)


def by_ann(split) -> dict[int, PoseInstance]:
    return {s.ann_id: s for s in split.samples}


# ------------------------------------------------------------------------- dataset cards
@pytest.mark.parametrize("name", POSE_CARDS)
def test_pose_cards_load_and_are_consistent(name):
    card = load_dataset_card(CARDS / f"{name}.yaml")
    m = card.meta()
    assert card.family == "pose" and card.format in DATASETS
    assert len(m.sigmas) == m.num_keypoints
    fi = m.flip_index()
    assert (fi[fi] == np.arange(m.num_keypoints)).all()  # a flip is an involution
    assert not set(m.upper_body_ids) & set(m.lower_body_ids)
    assert set(m.upper_body_ids) | set(m.lower_body_ids) == set(range(m.num_keypoints))
    assert card.citation.lstrip().startswith("@") and card.homepage and card.obtain and card.license
    for spec in card.splits.values():
        assert {"annotations", "images"} <= set(spec.files)


def test_card_sizes_and_keypoint_counts():
    k = {n: meta(n).num_keypoints for n in POSE_CARDS}
    assert k == {"coco": 17, "mpii": 16, "aic": 14, "crowdpose": 14, "ochuman": 17, "mhp": 16}
    coco, mpii = load_dataset_card(CARDS / "coco.yaml"), load_dataset_card(CARDS / "mpii.yaml")
    assert coco.splits["train2017"].size == 149813 and coco.splits["val2017"].size == 6352
    assert mpii.splits["train"].size == 22246 and mpii.splits["val"].size == 2958
    assert meta("coco").sigmas[:3] == (0.026, 0.025, 0.025)


# ------------------------------------------------------------------------- real samples
# (card, annotation file, image folder, samples kept, annotations skipped as keypoint-less, images)
REAL = [
    ("coco", "coco/test_coco.json", 12, 2, 4),
    ("aic", "aic/test_aic.json", 9, 0, 3),
    ("crowdpose", "crowdpose/test_crowdpose.json", 4, 1, 2),
    ("ochuman", "ochuman/test_ochuman.json", 5, 0, 3),
    ("mhp", "mhp/test_mhp.json", 4, 0, 2),
]


@needs_samples
@pytest.mark.parametrize("name,rel,n,no_kp,n_img", REAL)
def test_coco_style_real_samples(name, rel, n, no_kp, n_img):
    m = meta(name)
    split = read_coco_keypoints(SAMPLES / rel, SAMPLES / name, m, name=name, split="test")
    assert len(split) == n
    assert split.extra["skipped"] == {"crowd": 0, "no_keypoints": no_kp, "empty_box": 0}
    assert split.extra["num_images"] == n_img and split.extra["coco_gt"] == SAMPLES / rel
    assert split.files == [SAMPLES / rel] and split.family == "pose" and split.meta == m
    for s in split.samples:
        assert s.keypoints.shape == (m.num_keypoints, 3) and s.keypoints.dtype == np.float32
        assert s.image.is_file() and s.num_visible > 0 and s.bbox[2] > 0 and s.bbox[3] > 0
    first = read_coco_keypoints(SAMPLES / rel, SAMPLES / name, m, name=name, split="t", limit=2).samples
    assert [s.ann_id for s in first] == [s.ann_id for s in split.samples[:2]]


@needs_samples
def test_coco_real_values():
    split = read_coco_keypoints(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", meta("coco"), name="coco",
                                split="val")
    s = by_ann(split)
    assert set(s) == {442619, 198196, 230195, 460541, 488308, 1717641, 1724673, 437295, 467657, 531914,
                      533949, 543117}  # 1202706 and 508900 have no labelled keypoint
    a = s[442619]
    assert a.image == SAMPLES / "coco/000000000785.jpg" and a.image_id == 785 and (a.width, a.height) == (640, 425)
    np.testing.assert_allclose(a.bbox, [280.79, 44.73, 218.7, 346.68], rtol=1e-6)
    np.testing.assert_array_equal(a.keypoints[0], [367, 81, 2])
    np.testing.assert_array_equal(a.keypoints[16], [396, 341, 2])
    assert a.area == pytest.approx(27789.11055) and a.num_visible == 17
    np.testing.assert_array_equal(s[198196].keypoints[3], [0, 0, 0])  # unlabelled left_ear
    # 372.58 + 266.63 = 639.21 is clipped to the last pixel column (639) like mmpose
    np.testing.assert_allclose(s[533949].bbox, [372.58, 170.84, 639 - 372.58, 217.19], rtol=1e-6)
    assert split.extra["image_ids"] == [785, 40083, 196141, 197388]


@needs_samples
def test_aic_crowdpose_ochuman_mhp_values():
    aic = by_ann(read_coco_keypoints(SAMPLES / "aic/test_aic.json", SAMPLES / "aic", meta("aic"), name="aic",
                                     split="val"))
    np.testing.assert_array_equal(aic[4].keypoints[12], [395, 74, 2])  # head_top
    np.testing.assert_array_equal(aic[4].keypoints[7], [0, 0, 0])
    assert aic[4].area == pytest.approx(213 * 544 * 0.53)  # no area in AIC: mmpose's 0.53 x box

    cp = read_coco_keypoints(SAMPLES / "crowdpose/test_crowdpose.json", SAMPLES / "crowdpose", meta("crowdpose"),
                             name="crowdpose", split="test")
    assert cp.extra["crowd_index"] == {106848: 0.33, 103319: 0.39}
    c = by_ann(cp)
    assert 131039 not in c and c[123803].extra["crowd_index"] == 0.33 and c[127068].extra["crowd_index"] == 0.39
    np.testing.assert_array_equal(c[123803].keypoints[1], [208, 108, 2])

    oc = by_ann(read_coco_keypoints(SAMPLES / "ochuman/test_ochuman.json", SAMPLES / "ochuman", meta("ochuman"),
                                    name="ochuman", split="val"))
    np.testing.assert_allclose(oc[1].keypoints[0], [371.5701271305881, 188.86769422623237, 2], rtol=1e-6)
    assert oc[1].area == 356725 and oc[2].image == SAMPLES / "ochuman/000817.jpg"

    mh = by_ann(read_coco_keypoints(SAMPLES / "mhp/test_mhp.json", SAMPLES / "mhp", meta("mhp"), name="mhp",
                                    split="val"))
    np.testing.assert_allclose(mh[7646].keypoints[0], [151.74249267578125, 251.90750122070312, 2])
    np.testing.assert_allclose(mh[7646].bbox, [3.737499952316284, 5.232500076293945, 169.68249821662903,
                                               282.5550060272217], rtol=1e-6)


@needs_samples
def test_detections_real_samples():
    coco = read_coco_keypoints(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", meta("coco"), name="coco",
                               split="val", detections=SAMPLES / "coco/test_coco_det_AP_H_56.json")
    assert len(coco) == 118 and coco.extra["boxes"] == "detected" and len(coco.files) == 2
    d = coco.samples[0]
    assert d.image_id == 785 and d.score == pytest.approx(0.9999731779098511) and d.ann_id == -1
    np.testing.assert_allclose(d.bbox, [277.1183158543966, 45.699667786163765, 225.09126579259754,
                                        333.5602652943344], rtol=1e-6)
    assert not d.keypoints.any()
    thr = read_coco_keypoints(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", meta("coco"), name="coco",
                              split="val", detections=SAMPLES / "coco/test_coco_det_AP_H_56.json", det_score_thr=0.5)
    dets = json.loads((SAMPLES / "coco/test_coco_det_AP_H_56.json").read_text())
    assert len(thr) == sum(x["score"] >= 0.5 for x in dets)
    cp = read_coco_keypoints(SAMPLES / "crowdpose/test_crowdpose.json", SAMPLES / "crowdpose", meta("crowdpose"),
                             name="crowdpose", split="test",
                             detections=SAMPLES / "crowdpose/test_crowdpose_det_AP_40.json")
    assert len(cp) == 6 and cp.samples[5].extra == {"crowd_index": 0.39, "det_index": 5}


@needs_samples
def test_mpii_real_values():
    split = read_mpii_json(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii", meta("mpii"))
    assert len(split) == 5 and [s.ann_id for s in split.samples] == [0, 1, 2, 3, 4]
    a = split.samples[0]
    assert a.image == SAMPLES / "mpii/005808361.jpg" and a.image_id == 5808361 and a.image.is_file()
    # centre (966, 340), scale 4.718488: moved down 15 * scale, made 0-based, square of 200 * scale
    cx, cy, side = 965.0, 339.0 + 15 * 4.718488, 200 * 4.718488
    np.testing.assert_allclose(a.bbox, [cx - side / 2, cy - side / 2, side, side], rtol=1e-6)
    np.testing.assert_array_equal(a.keypoints[0], [803, 710, 1])  # joint (804, 711), 1-based
    np.testing.assert_allclose(a.keypoints[9], [961.2409, 79.0306, 1], rtol=1e-6)
    b = split.samples[2]
    assert b.image_id == 51423444 and b.num_visible == 14
    np.testing.assert_array_equal(b.keypoints[[0, 5]], 0)  # [-1, -1] with joints_vis 0
    assert a.head_size is None and split.extra["head_boxes"] is None


# ------------------------------------------------------------------------- through the card
@needs_samples
def test_registered_readers_through_cards(tmp_path):
    coco_root = tmp_path / "coco"
    (coco_root / "annotations").mkdir(parents=True)
    (coco_root / "annotations/person_keypoints_val2017.json").symlink_to(SAMPLES / "coco/test_coco.json")
    (coco_root / "val2017").symlink_to(SAMPLES / "coco")
    split = read_split("coco", "val2017", root=coco_root)
    assert len(split) == 12 and split.name == "coco" and split.split == "val2017"
    assert split.extra["detections_missing"] == coco_root / \
        "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"
    (coco_root / "person_detection_results").mkdir()
    (coco_root / "person_detection_results/COCO_val2017_detections_AP_H_56_person.json").symlink_to(
        SAMPLES / "coco/test_coco_det_AP_H_56.json")
    split = read_split("coco", "val2017", root=coco_root, limit=3)
    assert len(split) == 3 and len(split.extra["detections"]) == 3

    mpii_root = tmp_path / "mpii"
    (mpii_root / "annotations").mkdir(parents=True)
    (mpii_root / "annotations/mpii_val.json").symlink_to(SAMPLES / "mpii/test_mpii.json")
    (mpii_root / "images").symlink_to(SAMPLES / "mpii")
    boxes = np.array([[[10, 20], [40, 60]]] * 5, dtype=np.float64) + np.arange(5)[:, None, None]
    boxes[:, 1] += np.arange(5)[:, None] * 3.0
    kp = np.stack([s.keypoints for s in read_mpii_json(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii",
                                                       meta("mpii")).samples])
    write_mpii_head_boxes(mpii_root / "annotations/mpii_gt_val.mat", boxes, kp, meta("mpii"))
    split = read_split("mpii", "val", root=mpii_root)
    want = [0.6 * math.hypot(30 + 3 * i, 40 + 3 * i) for i in range(5)]
    assert [s.head_size for s in split.samples] == pytest.approx(want)
    assert split.files[-1] == mpii_root / "annotations/mpii_gt_val.mat"
    from scipy.io import loadmat

    mat = loadmat(str(mpii_root / "annotations/mpii_gt_val.mat"))
    assert mat["headboxes_src"].shape == (2, 2, 5) and mat["pos_gt_src"].shape == (16, 2, 5)
    np.testing.assert_allclose(mat["pos_gt_src"][0, :, 0], [804, 711])  # written back 1-based
    assert mat["jnt_missing"][0, 2] == 1


# ------------------------------------------------------------------------- round trips
def _synthetic_coco(k: int, rng: np.random.Generator):
    images = [{"id": 10, "file_name": "a.jpg", "width": 320, "height": 240, "crowdIndex": 0.5},
              {"id": 11, "file_name": "b.jpg", "width": 200, "height": 300, "crowdIndex": 0.9}]
    anns = []
    for i in range(5):
        kp = np.zeros((k, 3))
        kp[:, 0], kp[:, 1] = rng.uniform(0, 199, k).round(2), rng.uniform(0, 239, k).round(2)
        kp[:, 2] = rng.integers(0, 3, k)
        kp[kp[:, 2] == 0, :2] = 0
        anns.append({"image_id": 10 + i % 2, "bbox": [5.5 * i, 7.25, 60.0, 90.0], "keypoints": kp})
    anns.append({"image_id": 10, "bbox": [0, 0, 50, 50], "keypoints": np.zeros((k, 3)), "iscrowd": 1})
    return images, anns


@pytest.mark.parametrize("name", ["coco", "aic", "mhp"])
def test_coco_write_then_read(tmp_path, name):
    m = meta(name)
    images, anns = _synthetic_coco(m.num_keypoints, np.random.default_rng(0))
    path = write_coco_keypoints(tmp_path / "ann.json", images, anns, m)
    split = read_coco_keypoints(path, tmp_path, m, name=name, split="synth")
    ids = {id(a): i + 1 for i, a in enumerate(anns)}
    # instances come image by image (file order of 'images'), like mmpose
    labelled = sorted((a for a in anns[:5] if a["keypoints"][:, 2].max() > 0), key=lambda a: a["image_id"])
    assert len(split) == len(labelled) and split.extra["skipped"]["crowd"] == 1
    for a, s in zip(labelled, split.samples, strict=True):
        np.testing.assert_allclose(s.keypoints, a["keypoints"], rtol=1e-6)
        np.testing.assert_allclose(s.bbox, a["bbox"], rtol=1e-6)
        assert s.area == pytest.approx(60 * 90) and s.extra["crowd_index"] in (0.5, 0.9)
    assert split.extra["crowd_index"] == {10: 0.5, 11: 0.9}
    assert [s.ann_id for s in split.samples] == [ids[id(a)] for a in labelled]

    from pycocotools.coco import COCO  # the file is a proper COCO keypoint file

    gt = COCO(str(path))
    cat = gt.loadCats([1])[0]
    assert cat["keypoints"] == list(m.keypoint_names)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in m.skeleton]
    assert len(gt.getAnnIds(iscrowd=True)) == 1 and gt.anns[1]["num_keypoints"] == int((anns[0]["keypoints"][:, 2]
                                                                                        > 0).sum())


def test_mpii_write_then_read(tmp_path):
    m = meta("mpii")
    rng = np.random.default_rng(1)
    recs, truth = [], []
    for i in range(4):
        kp = np.column_stack([rng.uniform(0, 300, 16), rng.uniform(0, 200, 16), rng.integers(0, 2, 16)])
        kp[kp[:, 2] == 0, :2] = 0
        box = [20.0 + i, 10.0, 80.0 + 10 * i, 150.0]
        recs.append(mpii_record(f"{i:09d}.jpg", kp, box))
        truth.append((kp, box))
    path = write_mpii_json(tmp_path / "mpii_val.json", recs, m)
    split = read_mpii_json(path, tmp_path, m, name="mpii", split="val")
    assert len(split) == 4
    for s, (kp, (x, y, w, h)) in zip(split.samples, truth, strict=True):
        np.testing.assert_allclose(s.keypoints, kp, atol=1e-4)
        side = max(w, h)
        np.testing.assert_allclose(s.bbox, [x + w / 2 - side / 2, y + h / 2 - side / 2, side, side], atol=1e-4)


# ------------------------------------------------------------------------- bad input
def _coco_doc(k: int = 17) -> dict:
    return {"images": [{"id": 1, "file_name": "x.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 7, "image_id": 1, "bbox": [1, 2, 30, 40], "keypoints": [5, 5, 2] * k}],
            "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(k)], "skeleton": []}]}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_coco_16_keypoints_in_17_keypoint_file(tmp_path):
    doc = _coco_doc()
    doc["annotations"].append({"id": 8, "image_id": 1, "bbox": [0, 0, 9, 9], "keypoints": [1, 1, 2] * 16})
    path = _write(tmp_path / "bad.json", doc)
    with pytest.raises(DataFormatError) as e:
        read_coco_keypoints(path, tmp_path, meta("coco"), name="coco", split="val")
    assert str(e.value).startswith(f"{path} [record annotation id=8]: 48 values for a 17-keypoint dataset")
    assert e.value.path == str(path) and e.value.record == "annotation id=8"


def test_coco_missing_image_entry_bad_box_and_wrong_card(tmp_path):
    doc = _coco_doc()
    doc["annotations"][0]["image_id"] = 999
    path = _write(tmp_path / "noimg.json", doc)
    with pytest.raises(DataFormatError, match=r"noimg\.json \[record annotation id=7\]: image_id 999 has no entry"):
        read_coco_keypoints(path, tmp_path, meta("coco"), name="coco", split="val")
    doc = _coco_doc()
    doc["annotations"][0]["bbox"] = [1, 2, 3]
    path = _write(tmp_path / "box.json", doc)
    with pytest.raises(DataFormatError, match=r"\[record annotation id=7\]: bbox \[1, 2, 3\] is not 4 finite"):
        read_coco_keypoints(path, tmp_path, meta("coco"), name="coco", split="val")
    doc = _coco_doc()
    doc["images"][0].pop("width")
    path = _write(tmp_path / "img.json", doc)
    with pytest.raises(DataFormatError, match=r"\[record image #0 id=1\]: image entry has no 'width'"):
        read_coco_keypoints(path, tmp_path, meta("coco"), name="coco", split="val")
    path = _write(tmp_path / "k14.json", _coco_doc(14))
    with pytest.raises(DataFormatError, match="lists 14 keypoint names for a 17-keypoint dataset"):
        read_coco_keypoints(path, tmp_path, meta("coco"), name="coco", split="val")


def test_non_json_and_wrong_top_level(tmp_path):
    path = tmp_path / "ann.json"
    path.write_bytes(b"\x89PNG\r\n not json")
    for fn in (lambda: read_coco_keypoints(path, tmp_path, meta("coco"), name="c", split="v"),
               lambda: read_mpii_json(path, tmp_path, meta("mpii"))):
        with pytest.raises(DataFormatError, match=rf"^{path}: not a JSON file"):
            fn()
    _write(path, [1, 2])
    with pytest.raises(DataFormatError, match="expected a COCO keypoint object"):
        read_coco_keypoints(path, tmp_path, meta("coco"), name="c", split="v")
    _write(path, _coco_doc())
    with pytest.raises(DataFormatError, match="expected a JSON list of MPII person records"):
        read_mpii_json(path, tmp_path, meta("mpii"))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_coco_keypoints(tmp_path / "missing.json", tmp_path, meta("coco"), name="c", split="v")


def test_bad_detections_and_mpii_records(tmp_path):
    ann = _write(tmp_path / "ann.json", _coco_doc())
    det = _write(tmp_path / "det.json", [{"image_id": 1, "bbox": [0, 0, 5, 5], "score": 0.9, "category_id": 1},
                                         {"image_id": 2, "bbox": [0, 0, 5, 5], "score": 0.8, "category_id": 1}])
    with pytest.raises(DataFormatError, match=r"det\.json \[record detection #1\]: image_id 2 is not in ann\.json"):
        read_coco_keypoints(ann, tmp_path, meta("coco"), name="c", split="v", detections=det)

    rec = {"image": "000000001.jpg", "center": [50, 60], "scale": 1.2, "joints": [[1, 2]] * 16,
           "joints_vis": [1] * 16}
    path = _write(tmp_path / "mpii.json", [rec, {**rec, "image": "000000002.jpg", "joints": [[1, 2]] * 15}])
    with pytest.raises(DataFormatError) as e:
        read_mpii_json(path, tmp_path, meta("mpii"))
    assert str(e.value) == f"{path} [record #1 image=000000002.jpg]: joints has 15 entries for a 16-keypoint dataset"
    path = _write(tmp_path / "mpii2.json", [{**rec, "scale": -1}])
    with pytest.raises(DataFormatError, match=r"\[record #0 image=000000001.jpg\]: scale -1 is not a positive"):
        read_mpii_json(path, tmp_path, meta("mpii"))
    good = _write(tmp_path / "mpii3.json", [rec, rec])
    mat = write_mpii_head_boxes(tmp_path / "gt.mat", np.zeros((3, 2, 2)), np.zeros((3, 16, 3)), meta("mpii"))
    with pytest.raises(DataFormatError, match=r"gt\.mat: 3 head boxes for 2 annotation records"):
        read_mpii_json(good, tmp_path, meta("mpii"), head_boxes=mat)
    (tmp_path / "junk.mat").write_text("junk")
    with pytest.raises(DataFormatError, match=r"junk\.mat: not a MATLAB \.mat file"):
        read_head_sizes(tmp_path / "junk.mat")


def test_writers_validate_before_writing(tmp_path):
    m = meta("coco")
    images = [{"id": 1, "file_name": "x.jpg", "width": 10, "height": 10}]
    with pytest.raises(DataFormatError, match="48 values for a 17-keypoint dataset"):
        write_coco_keypoints(tmp_path / "a.json", images, [{"image_id": 1, "bbox": [0, 0, 1, 1],
                                                            "keypoints": [0] * 48}], m)
    assert not (tmp_path / "a.json").exists()
    with pytest.raises(DataFormatError, match="joints has 15 entries"):
        write_mpii_json(tmp_path / "m.json", [{"image": "a.jpg", "center": [1, 1], "scale": 1.0,
                                               "joints": [[0, 0]] * 15, "joints_vis": [0] * 16}], meta("mpii"))
    assert not (tmp_path / "m.json").exists()
    empty = write_coco_keypoints(tmp_path / "empty.json", images, [], m)  # a split without people is valid
    assert len(read_coco_keypoints(empty, tmp_path, m, name="coco", split="v")) == 0
