"""COCO-WholeBody, Human-Art, OCHuman, AP-10K and ChimpACT: keypoint definitions against the
published tables, readers and `data check` on small files written in each real format, and
ground truth scored as predictions through the pose evaluator."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hcbench.cards import get_card, resolve
from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.check import check_dataset
from hcbench.data.readers.wholebody import NUM_KEYPOINTS, write_coco_wholebody
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError
from hcbench.families.base import get_family
from hcbench.metrics.wholebody import SIGMAS as WB_SIGMAS

REAL = Path(__file__).resolve().parents[2] / "tests" / "real-samples"

# ---------------------------------------------------------------- published definitions
# AP-10K (AlexTheBad/AP-10K release, mmpose dataset_info ap10k): name, swap partner, sigma
AP10K = [("L_Eye", "R_Eye", .025), ("R_Eye", "L_Eye", .025), ("Nose", "", .026), ("Neck", "", .035),
         ("Root of tail", "", .035), ("L_Shoulder", "R_Shoulder", .079), ("L_Elbow", "R_Elbow", .072),
         ("L_F_Paw", "R_F_Paw", .062), ("R_Shoulder", "L_Shoulder", .079), ("R_Elbow", "L_Elbow", .072),
         ("R_F_Paw", "L_F_Paw", .062), ("L_Hip", "R_Hip", .107), ("L_Knee", "R_Knee", .087),
         ("L_B_Paw", "R_B_Paw", .089), ("R_Hip", "L_Hip", .107), ("R_Knee", "L_Knee", .087),
         ("R_B_Paw", "L_B_Paw", .089)]
# ChimpACT (ShirleyMaxx/ChimpACT, mmpose/configs/_base_/datasets/leipzigchimp.py)
CHIMPACT = [("pelvis", "", .026), ("right_knee", "left_knee", .083), ("right_ankle", "left_ankle", .089),
            ("left_knee", "right_knee", .083), ("left_ankle", "right_ankle", .089), ("neck", "", .026),
            ("upper_lip", "", .026), ("lower_lip", "", .026), ("right_eye", "left_eye", .026),
            ("left_eye", "right_eye", .026), ("right_shoulder", "left_shoulder", .179),
            ("right_elbow", "left_elbow", .072), ("right_wrist", "left_wrist", .062),
            ("left_shoulder", "right_shoulder", .179), ("left_elbow", "right_elbow", .072),
            ("left_wrist", "right_wrist", .062)]
# COCO-WholeBody face swaps (iBUG-68 mirror pairs, as its dataset_info lists them, 0-based face ids)
FACE_SWAPS = {0: 16, 1: 15, 2: 14, 3: 13, 4: 12, 5: 11, 6: 10, 7: 9, 17: 26, 18: 25, 19: 24, 20: 23, 21: 22,
              31: 35, 32: 34, 36: 45, 37: 44, 38: 43, 39: 42, 40: 47, 41: 46, 48: 54, 49: 53, 50: 52, 55: 59,
              56: 58, 60: 64, 61: 63, 65: 67}


def _pairs(card) -> set[frozenset]:
    return {frozenset(p) for p in card.keypoints.flip_pairs}


@pytest.mark.parametrize("name,table", [("ap10k", AP10K), ("chimpact", CHIMPACT)])
def test_animal_keypoints_match_the_published_tables(name, table):
    card = get_dataset_card(name)
    assert card.keypoints.names == [n for n, _, _ in table]
    assert card.keypoints.sigmas == [s for _, _, s in table]
    names = card.keypoints.names
    swaps = {frozenset((names.index(n), names.index(s))) for n, s, _ in table if s}
    assert _pairs(card) == swaps
    flip = card.meta().flip_index()
    for i, (n, s, _) in enumerate(table):
        assert names[flip[i]] == (s or n)


def test_wholebody_keypoints_match_the_published_definition():
    for card in (get_dataset_card("coco_wholebody"), get_dataset_card("synth_wholebody")):
        names = card.keypoints.names
        assert len(names) == NUM_KEYPOINTS == 133
        assert names[:17] == get_dataset_card("coco").keypoints.names
        assert names[17:23] == ["left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe",
                                "right_heel"]
        assert names[23:91] == [f"face-{i}" for i in range(68)]
        assert names[91] == "left_hand_root" and names[112] == "right_hand_root"
        assert names[95] == "left_thumb4" and names[132] == "right_pinky_finger4"
        assert card.keypoints.sigmas == [s for p in ("body", "foot", "face", "lefthand", "righthand")
                                         for s in WB_SIGMAS[p]]
        expected = set()
        for i, n in enumerate(names):
            if n.startswith("left_"):
                expected.add(frozenset((i, names.index("right_" + n[5:]))))
        expected |= {frozenset((23 + a, 23 + b)) for a, b in FACE_SWAPS.items()}
        assert _pairs(card) == expected
        assert card.options["iou_type"] == "keypoints_wholebody" and card.options["use_area"] is True


def test_synthetic_face_points_mirror_onto_their_flip_partners():
    from hcbench.synth.figure import FACE_TEMPLATE

    for a, b in FACE_SWAPS.items():
        np.testing.assert_allclose(FACE_TEMPLATE[a], FACE_TEMPLATE[b] * [-1, 1], atol=1e-12)
    centre = set(range(68)) - set(FACE_SWAPS) - set(FACE_SWAPS.values())
    assert centre == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}
    assert np.abs(FACE_TEMPLATE[sorted(centre), 0]).max() < 1e-12


# ---------------------------------------------------------------- small files in real formats
def _images(folder: Path, names: list[str], size=(60, 40)) -> None:
    rng = np.random.default_rng(0)
    for n in names:
        write_image(folder / n, rng.integers(0, 255, (*size, 3), dtype=np.uint8))


def _person(rng, k: int, w=40, h=60) -> np.ndarray:
    kp = np.zeros((k, 3))
    kp[:, 0] = rng.uniform(2, w - 2, k)
    kp[:, 1] = rng.uniform(2, h - 2, k)
    kp[:, 2] = rng.choice([0, 1, 2], k, p=[0.2, 0.2, 0.6])
    kp[kp[:, 2] == 0] = 0
    return kp


def _gt_as_predictions(split):
    return [{"index": i, "keypoints": s.keypoints[:, :2].copy(), "scores": np.ones(len(s.keypoints), np.float32)}
            for i, s in enumerate(split.samples)]


def _score_gt(tmp_path: Path, card_name: str, split) -> dict:
    card = resolve(get_card(card_name), "full")
    ev = get_family("pose").get_evaluator()
    path = ev.write(_gt_as_predictions(split), split, card, tmp_path / f"{card_name}.json")
    return ev.score(path, split, card)


def _wholebody_root(root: Path, n: int = 3) -> None:
    meta = get_dataset_card("coco_wholebody").meta()
    rng = np.random.default_rng(1)
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        names = [f"{i:012d}.jpg" for i in range(1, n + 1)]
        _images(root / folder, names)
        images = [{"id": i, "file_name": nm, "width": 40, "height": 60} for i, nm in enumerate(names, 1)]
        anns = []
        for i in range(1, n + 1):
            kp = _person(rng, 133)
            kp[112:133] = 0  # one hand not annotated, as in many real records
            anns.append({"image_id": i, "bbox": [1.0, 1.0, 38.0, 58.0], "area": 900.0, "keypoints": kp})
        write_coco_wholebody(root / "annotations" / f"coco_wholebody_{split}_v1.0.json", images, anns, meta)


def test_wholebody_reader_check_and_scoring(tmp_path):
    _wholebody_root(tmp_path)
    doc = json.loads((tmp_path / "annotations" / "coco_wholebody_val_v1.0.json").read_text())
    a = doc["annotations"][0]
    assert len(a["keypoints"]) == 51 and len(a["foot_kpts"]) == 18 and len(a["face_kpts"]) == 204
    assert a["righthand_valid"] is False and a["righthand_box"] == [0.0, 0.0, 0.0, 0.0]
    assert len(doc["categories"][0]["keypoints"]) == 17  # the real files list the body names only
    split = read_split("coco_wholebody", "val", tmp_path)
    assert len(split) == 3 and split.samples[0].keypoints.shape == (133, 3) and split.extra["wholebody"]
    np.testing.assert_allclose(split.samples[0].keypoints[17:23].reshape(-1), a["foot_kpts"], atol=1e-4)
    rep = check_dataset("coco_wholebody", tmp_path)
    assert rep.ok, rep.problems
    m = _score_gt(tmp_path, "coco_wholebody_pose", split)
    assert m["AP"] == m["wholebody_AP"] == 1.0 and m["body_AP"] == m["face_AP"] == m["lefthand_AP"] == 1.0
    assert m["righthand_AP"] == -1.0  # no right hand annotated anywhere: undefined, stored as null


def test_score_cli_with_the_wholebody_card(tmp_path, capsys):
    from hcbench.cli import main

    _wholebody_root(tmp_path)
    gt = tmp_path / "annotations" / "coco_wholebody_val_v1.0.json"
    doc = json.loads(gt.read_text())
    # results in COCO-WholeBody's own layout (body keypoints + part lists), the left hand 3 px off
    res = []
    for a in doc["annotations"]:
        r = {"image_id": a["image_id"], "category_id": 1, "score": 0.9}
        for key in ("keypoints", "foot_kpts", "face_kpts", "lefthand_kpts", "righthand_kpts"):
            kp = np.asarray(a[key], float).reshape(-1, 3)
            kp[:, 2] = 1.0
            if key == "lefthand_kpts":
                kp[:, 0] += 3.0
            r[key] = kp.reshape(-1).tolist()
        res.append(r)
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(res))
    assert main(["score", "pose", "--card", "coco_wholebody_pose", "--gt", str(gt), "--pred", str(pred)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["body_AP"] == 1.0 and out["face_AP"] == 1.0 and out["lefthand_AP"] < 0.5
    assert out["righthand_AP"] is None or out["righthand_AP"] == -1.0
    # without a card: --wholebody says the ground truth is a COCO-WholeBody file; same numbers
    assert main(["score", "pose", "--wholebody", "--gt", str(gt), "--pred", str(pred)]) == 0
    assert json.loads(capsys.readouterr().out) == out


def test_wholebody_reader_names_the_bad_record(tmp_path):
    _wholebody_root(tmp_path)
    path = tmp_path / "annotations" / "coco_wholebody_val_v1.0.json"
    doc = json.loads(path.read_text())
    del doc["annotations"][1]["lefthand_kpts"]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"coco_wholebody_val_v1\.0\.json \[record annotation id=2\]: "
                                              r"no 'lefthand_kpts'"):
        read_split("coco_wholebody", "val", tmp_path)
    rep = check_dataset("coco_wholebody", tmp_path)
    assert not rep.ok and any("lefthand_kpts" in p for p in rep.problems)


def _coco_file(path: Path, images, anns, cats) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def test_ap10k_species_categories(tmp_path):
    card = get_dataset_card("ap10k")
    names = card.keypoints.names
    cats = [{"id": 1, "name": "antelope", "supercategory": "Bovidae", "keypoints": names, "skeleton": []},
            {"id": 9, "name": "cat", "supercategory": "Felidae", "keypoints": names, "skeleton": []}]
    rng = np.random.default_rng(2)
    for split in ("train", "val", "test"):
        files = [f"{split}{i}.jpg" for i in range(4)]
        _images(tmp_path / "data", files)
        images = [{"id": i + 1, "file_name": f, "width": 40, "height": 60} for i, f in enumerate(files)]
        anns = [{"id": i + 1, "image_id": i + 1, "category_id": (1, 9)[i % 2], "bbox": [1, 1, 38, 58], "area": 1500,
                 "iscrowd": 0, "num_keypoints": 10, "keypoints": _person(rng, 17).reshape(-1).tolist()}
                for i in range(4)]
        _coco_file(tmp_path / "annotations" / f"ap10k-{split}-split1.json", images, anns, cats)
    rep = check_dataset("ap10k", tmp_path)
    assert rep.ok, rep.problems
    split = read_split("ap10k", "test", tmp_path)
    assert len(split) == 4 and [s.extra["category_id"] for s in split.samples] == [1, 9, 1, 9]
    m = _score_gt(tmp_path, "ap10k_pose", split)
    assert m["AP"] == 1.0
    # species are separate COCO categories: a prediction under the wrong species matches nothing
    ev = get_family("pose").get_evaluator()
    card = resolve(get_card("ap10k_pose"), "full")
    path = ev.write(_gt_as_predictions(split), split, card, tmp_path / "p.json")
    res = json.loads(path.read_text())
    assert [r["category_id"] for r in res] == [1, 9, 1, 9]
    for r in res:
        r["category_id"] = 1
    path.write_text(json.dumps(res))
    assert ev.score(path, split, card)["AP"] < 1.0


def test_chimpact_reader_check_and_scoring(tmp_path):
    card = get_dataset_card("chimpact")
    cats = [{"id": 1, "name": "chimpanzee", "keypoints": card.keypoints.names, "skeleton": []}]
    rng = np.random.default_rng(3)
    for split in ("train", "val", "test"):
        _images(tmp_path / split / "images", ["a.jpg", "b.jpg"])
        images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 60},
                  {"id": 2, "file_name": "b.jpg", "width": 40, "height": 60}]
        anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 38, 58], "area": 1200, "iscrowd": 0,
                 "num_keypoints": 12, "keypoints": _person(rng, 16).reshape(-1).tolist()} for i in (1, 2)]
        _coco_file(tmp_path / "annotations" / f"{split}.json", images, anns, cats)
    assert check_dataset("chimpact", tmp_path).ok
    split = read_split("chimpact", "test", tmp_path)
    assert split.samples[0].keypoints.shape == (16, 3)
    assert _score_gt(tmp_path, "chimpact_pose", split)["AP"] == 1.0
    # 17-keypoint records in a 16-keypoint dataset: named
    doc = json.loads((tmp_path / "annotations" / "test.json").read_text())
    doc["annotations"][1]["keypoints"] += [0, 0, 0]
    (tmp_path / "annotations" / "test.json").write_text(json.dumps(doc))
    with pytest.raises(DataFormatError, match=r"test\.json \[record annotation id=2\]: 51 values for a "
                                              r"16-keypoint dataset"):
        read_split("chimpact", "test", tmp_path)


def test_humanart_layout_and_per_category_ap(tmp_path):
    root = tmp_path / "HumanArt"
    coco = get_dataset_card("coco").keypoints.names
    cats = [{"id": 1, "name": "person", "keypoints": coco, "skeleton": []}]
    rng = np.random.default_rng(4)
    scenes = ["2D_virtual_human/cartoon", "real_human/dance", "3D_virtual_human/sculpture"]
    for split, fname in (("train", "training_humanart_coco.json"), ("val", "validation_humanart.json")):
        images, anns = [], []
        for i, scene in enumerate(scenes, 1):
            rel = f"HumanArt/images/{scene}/{split}_{i:06d}.jpg"
            _images(tmp_path, [rel])
            im = {"id": i, "file_name": rel, "width": 40, "height": 60}
            if i != 3:  # the category field where present, else the folder decides
                im["category"] = scene.split("/")[1]
            images.append(im)
            anns.append({"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 38, 58], "area": 1600,
                         "iscrowd": 0, "num_keypoints": 12, "keypoints": _person(rng, 17).reshape(-1).tolist()})
        _coco_file(root / "annotations" / fname, images, anns, cats)
    rep = check_dataset("humanart", root)
    assert rep.ok, rep.problems
    split = read_split("humanart", "val", root)
    m = _score_gt(tmp_path, "humanart_pose", split)
    # scenes the card lists but the split lacks are NaN (undefined)
    assert m["AP"] == 1.0 and {k for k in m if k.startswith("AP/") and m[k] == m[k]} == {
        "AP/cartoon", "AP/dance", "AP/sculpture"}
    # one person per category: pycocotools' precision tp / (tp + fp + eps) is 1 / (1 + eps) there
    assert all(m[k] == pytest.approx(1.0, abs=1e-12) for k in ("AP/cartoon", "AP/dance", "AP/sculpture"))


def _ochuman_root(tmp_path: Path) -> Path:
    """$HCBENCH_DATA-style root: ochuman/ (the real OCHuman sample) beside coco/ (the real COCO
    sample as train2017), the layout the eval-only card reads."""
    och, coco = REAL / "ochuman", REAL / "coco"
    if not och.is_dir() or not coco.is_dir():
        pytest.skip("real OCHuman/COCO samples not found")
    root = tmp_path / "data"
    (root / "ochuman" / "annotations").mkdir(parents=True)
    for split in ("val", "test"):
        shutil.copy(och / "test_ochuman.json",
                    root / "ochuman" / "annotations" / f"ochuman_coco_format_{split}_range_0.00_1.00.json")
    (root / "ochuman" / "images").symlink_to(och, target_is_directory=True)
    (root / "coco" / "annotations").mkdir(parents=True)
    shutil.copy(coco / "test_coco.json", root / "coco" / "annotations" / "person_keypoints_train2017.json")
    (root / "coco" / "train2017").symlink_to(coco, target_is_directory=True)
    return root


def test_ochuman_real_sample_reads_checks_and_scores(tmp_path):
    root = _ochuman_root(tmp_path)
    split = read_split("ochuman", "val", root / "ochuman")
    doc = json.loads((REAL / "ochuman" / "test_ochuman.json").read_text())
    assert len(split) == sum(1 for a in doc["annotations"] if max(a["keypoints"][2::3]) > 0 and not a["iscrowd"])
    train = read_split("ochuman", "coco_train2017", root / "ochuman")
    assert train.samples[0].image.parent.resolve() == (REAL / "coco").resolve()
    rep = check_dataset("ochuman", root / "ochuman")
    # the coco_train2017 split's size is the full COCO's: the sample is short of it, nothing else
    assert [p for p in rep.problems if "wrong count" not in p] == [], rep.problems
    assert _score_gt(tmp_path, "ochuman_pose", split)["AP"] == 1.0
