"""``hcbench score <family> --card NAME``: the card supplies every protocol option.

- MPII -> PCKh, CrowdPose -> crowd AP with its sigmas, COCO -> OKS AP on the card's split,
  CityPersons -> its four MR-2 setups, CrowdHuman -> AP/MR-2/JI with clipping: each on a dataset
  root in the real layout, equal to the metric functions on the same inputs;
- every card in tasks/ is accepted by ``hcbench score`` and, without its data, fails with one
  clear line (exit 2, no traceback) saying what ``--gt`` must be; the synthetic cards are scored
  for real by the family contract tests (tests/families/test_contracts.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from hcbench.cards import get_card, list_cards, resolve
from hcbench.cli import main
from hcbench.data.cards import get_dataset_card
from hcbench.families.base import get_family

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "real-samples"


def score(capsys, *argv) -> tuple[int, dict | None, str]:
    rc = main(["score", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real sample {path} not present")
    return path


def _pose_predictions(card_name: str, root: Path, tmp_path: Path, sd: float = 3.0):
    """The card's eval split read from ``root`` and a predictions file of its persons, moved by
    N(0, sd) px, written by the family's evaluator (as ``hcbench run`` writes it)."""
    card = resolve(get_card(card_name))
    ev = get_family("pose").get_evaluator()
    split = ev.eval_split(card, root)
    rng = np.random.default_rng(0)
    preds = [{"index": i, "keypoints": s.keypoints[:, :2] + rng.normal(0, sd, (len(s.keypoints), 2)),
              "scores": np.full(len(s.keypoints), 0.9)} for i, s in enumerate(split.samples)]
    path = ev.write(preds, split, card, tmp_path / f"{card_name}.predictions.json")
    return card, split, path


# --------------------------------------------------------------------------- pose
def test_mpii_card_scores_pckh(capsys, tmp_path):
    from hcbench.data.readers.mpii import write_mpii_head_boxes
    from hcbench.metrics.pose import pckh

    src = _need(REAL / "mpii" / "test_mpii.json")
    root = tmp_path / "mpii"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(src, root / "annotations" / "mpii_val.json")
    shutil.copytree(REAL / "mpii", root / "images", ignore=shutil.ignore_patterns("*.json"))
    records = json.loads(src.read_text())
    kp = np.array([np.c_[np.asarray(r["joints"]) - 1, r["joints_vis"]] for r in records], float)
    head = np.stack([kp[:, 9, :2] - 25, kp[:, 9, :2] + 25], axis=1)  # a 50 px box on the head top
    meta = get_dataset_card("mpii").meta()
    write_mpii_head_boxes(root / "annotations" / "mpii_gt_val.mat", head, kp, meta)
    card, split, pred = _pose_predictions("mpii_pose", root, tmp_path, sd=8.0)

    rc, out, err = score(capsys, "pose", "--card", "mpii_pose", "--gt", root, "--pred", pred)
    assert rc == 0, err
    gt = np.stack([s.keypoints for s in split.samples])
    sizes = np.array([s.head_size for s in split.samples])
    res = {r["index"]: r for r in json.loads(pred.read_text())}
    p = np.stack([np.asarray(res[i]["keypoints"]).reshape(-1, 3)[:, :2] for i in range(len(split.samples))])
    want = pckh(p, gt[..., :2], gt[..., 2] > 0, sizes, thr=0.5)  # the card's pckh_thr
    assert out["PCKh"] == pytest.approx(want["PCKh"]) and out["PCKh@0.1"] == pytest.approx(want["PCKh@0.1"])
    assert 0 < out["PCKh@0.1"] < out["PCKh"] < 1
    # a COCO-style file cannot carry head sizes: the card says what --gt must be
    rc, _, err = score(capsys, "pose", "--card", "mpii_pose", "--gt", tmp_path / "x.json", "--pred", pred)
    assert rc == 2 and "x.json" in err


def test_coco_card_scores_oks_on_its_split_and_on_a_coco_file(capsys, tmp_path):
    from hcbench.metrics.pose import keypoint_ap

    src = _need(REAL / "coco" / "test_coco.json")
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    shutil.copy(src, root / "annotations" / "person_keypoints_val2017.json")
    shutil.copytree(REAL / "coco", root / "val2017", ignore=shutil.ignore_patterns("*.json"))
    card, split, pred = _pose_predictions("coco_pose", root, tmp_path)

    rc, by_root, err = score(capsys, "pose", "--card", "coco_pose", "--gt", root, "--pred", pred)
    assert rc == 0, err
    assert by_root == pytest.approx(get_family("pose").get_evaluator().score(pred, split, card), abs=1e-12)
    # the annotation file at its place under the root names the same root
    rc, by_file, _ = score(capsys, "pose", "--card", "coco_pose", "--gt",
                           root / "annotations" / "person_keypoints_val2017.json", "--pred", pred)
    assert by_file == by_root
    # a bare COCO json elsewhere: OKS with the card's sigmas and area rule, same AP
    loose = tmp_path / "gt.json"
    shutil.copy(src, loose)
    rc, loose_out, _ = score(capsys, "pose", "--card", "coco_pose", "--gt", loose, "--pred", pred)
    ref = keypoint_ap(json.loads(src.read_text()), json.loads(pred.read_text()), sigmas="coco", use_area=True,
                      backend="pycocotools")
    assert loose_out["AP"] == pytest.approx(ref["AP"]) == pytest.approx(by_root["AP"])


# --------------------------------------------------------------------------- detection
def _city_items():
    from hcbench.data.types import DetectionSample

    def sample(image_id, boxes, labels, ignore=()):
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        return DetectionSample(Path(image_id), image_id, b, b.copy(), np.asarray(ignore, np.float32).reshape(-1, 4),
                               labels=np.asarray(labels))

    img = np.zeros((32, 64, 3), np.uint8)  # the reader takes the frame size from the card (2048 x 1024)
    return [(img, sample("aachen_000001_000019_leftImg8bit.png",
                         [[100, 100, 41, 100], [300, 100, 41, 100], [500, 100, 41, 100], [700, 300, 20, 45]],
                         [1, 1, 1, 1], ignore=[[59, 320, 18, 22]])),
            (img, sample("bochum_000000_000313_leftImg8bit.png", [[900, 400, 60, 150], [50, 50, 30, 70]], [1, 2]))]


def test_citypersons_card_scores_its_four_setups(capsys, tmp_path):
    from hcbench.data.readers.detection import write_citypersons
    from hcbench.families.detection_eval import ground_truth
    from hcbench.metrics.detection import citypersons_mr

    root = tmp_path / "citypersons"
    write_citypersons(root, "val", _city_items())
    dets = [{"image_id": "aachen_000001_000019_leftImg8bit.png", "bbox": b, "score": s}
            for b, s in (([100, 100, 41, 100], 0.9), ([59.3, 300, 16.4, 40], 0.8), ([300, 100, 41, 100], 0.7),
                         ([702, 301, 19, 44], 0.6))]
    dets += [{"image_id": "bochum_000000_000313_leftImg8bit.png", "bbox": [905, 410, 55, 140], "score": 0.95}]
    pred = tmp_path / "dets.json"
    pred.write_text(json.dumps(dets))

    rc, out, err = score(capsys, "detection", "--card", "citypersons_det", "--gt", root, "--pred", pred)
    assert rc == 0, err
    assert list(out) == ["MR-2", "MR-2_small", "MR-2_heavy", "MR-2_all"]  # the card's setups
    card = resolve(get_card("citypersons_det"))
    gts = ground_truth(get_family("detection").get_evaluator().eval_split(card, root))
    assert gts[0]["width"] == 2048 and gts[0]["height"] == 1024  # the card's frame size clips
    per: dict[str, list] = {}
    for d in dets:
        per.setdefault(d["image_id"], []).append(d["bbox"] + [d["score"]])
    per = {k: np.asarray(v, float) for k, v in per.items()}
    for key, setup in (("MR-2", "reasonable"), ("MR-2_small", "small"), ("MR-2_heavy", "heavy"), ("MR-2_all", "all")):
        assert out[key] == pytest.approx(citypersons_mr(gts, per, setup)["MR-2"]), key


def test_crowdhuman_card_clips_with_the_images_or_fails(capsys, tmp_path):
    from hcbench.data.readers.detection import write_crowdhuman
    from hcbench.data.types import DetectionSample
    from hcbench.metrics.detection import crowdhuman_eval

    boxes = np.array([[-60, 5, 100, 90], [70, 10, 40, 80]], np.float32)  # the first sticks out of the image
    s = DetectionSample(Path("x"), "273271,c9db000d5146c15", boxes, boxes.copy(), np.zeros((0, 4), np.float32))
    root = tmp_path / "crowdhuman"
    write_crowdhuman(root, "val", [(np.zeros((100, 120, 3), np.uint8), s)])
    pred = tmp_path / "dets.json"
    pred.write_text(json.dumps([{"image_id": s.image_id, "bbox": [0, 5, 40, 90], "score": 0.9},
                                {"image_id": s.image_id, "bbox": [70, 10, 40, 80], "score": 0.8}]))
    rc, out, err = score(capsys, "detection", "--card", "crowdhuman_det", "--gt", root / "annotation_val.odgt",
                         "--pred", pred)
    assert rc == 0, err
    dets = {s.image_id: np.array([[0, 5, 40, 90, 0.9], [70, 10, 40, 80, 0.8]])}
    clipped = crowdhuman_eval([{"image_id": s.image_id, "boxes": boxes, "ignore": [], "width": 120, "height": 100}], dets)
    unclipped = crowdhuman_eval([{"image_id": s.image_id, "boxes": boxes, "ignore": []}], dets)
    assert out == pytest.approx(clipped) and out["AP"] > unclipped["AP"]
    shutil.rmtree(root / "Images")  # no images: no silent unclipped score
    rc, _, err = score(capsys, "detection", "--card", "crowdhuman_det", "--gt", root / "annotation_val.odgt",
                       "--pred", pred)
    assert rc == 2 and "no size for image" in err and "--sizes" in err
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({s.image_id: [120, 100]}))
    rc, out, _ = score(capsys, "detection", "--card", "crowdhuman_det", "--gt", root / "annotation_val.odgt",
                       "--pred", pred, "--sizes", sizes)
    assert out == pytest.approx(clipped)


# --------------------------------------------------------------------------- every card
@pytest.mark.parametrize("name", [c.name for c in list_cards()])
def test_every_card_is_accepted_and_asks_for_its_data(capsys, tmp_path, name):
    card = get_card(name)
    empty = tmp_path / "empty"
    empty.mkdir()
    pred = tmp_path / "pred.json"
    pred.write_text("[]")
    rc, _, err = score(capsys, card.family, "--card", name, "--gt", empty, "--pred", pred)
    assert rc == 2, err
    assert err.startswith("hcbench: error: ") and len(err.strip().splitlines()) == 1, err  # one line, no traceback
    assert "Traceback" not in err


@pytest.mark.parametrize("name,sample", [("aic_pose", "aic/test_aic.json"), ("crowdpose_pose", "crowdpose/test_crowdpose.json"),
                                         ("ochuman_pose", "ochuman/test_ochuman.json")])
def test_real_sample_cards_score_through_their_dataset_root(capsys, tmp_path, name, sample):
    """The real annotation samples at their places under a dataset root, scored with the card."""
    src = _need(REAL / sample)
    card = resolve(get_card(name))
    files = get_dataset_card(card.dataset.name).split(card.dataset.split).files
    root = tmp_path / card.dataset.name
    (root / files["annotations"]).parent.mkdir(parents=True)
    shutil.copy(src, root / files["annotations"])
    shutil.copytree(src.parent, root / files["images"], ignore=shutil.ignore_patterns("*.json"))
    card, split, pred = _pose_predictions(name, root, tmp_path, sd=12.0)
    rc, out, err = score(capsys, "pose", "--card", name, "--gt", root, "--pred", pred)
    assert rc == 0, err
    assert set(card.eval.metrics) <= set(out)
    assert out == pytest.approx(get_family("pose").get_evaluator().score(pred, split, card), abs=1e-12)
    assert 0 < out["AP"] <= 1
