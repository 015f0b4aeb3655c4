"""The synthetic suite, generated small and read back through the real readers and ``data check``."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.readers.reid import parse_market_name
from hcbench.data.transforms.image import load_label, load_rgb
from hcbench.synth import DATASETS, write_suite
from hcbench.synth.attributes import ATTRIBUTES, write_attributes
from hcbench.synth.body import COCO_FLIP_PAIRS, COCO_KEYPOINTS, COCO_SKELETON
from hcbench.synth.suite import suite_counts, synth_specs

FRACTION = 0.1  # pose 40/10, parsing 30/6, reid 6 ids x 6 + 3 test ids, attr 60/10/20, det 20/5
COUNTS = suite_counts("smoke", FRACTION)
LIP_USED = {0, 1, 2, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19}


@pytest.fixture(scope="module")
def suite(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("synth")
    paths = write_suite(out, "smoke", seed=0, preview=out / "preview", fraction=FRACTION)
    paths["_preview"] = out / "preview"
    return paths


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_returns_every_dataset_and_writes_previews(suite):
    assert [n for n in suite if not n.startswith("_")] == list(DATASETS)
    for name in DATASETS:
        assert suite[name].is_dir() and suite[name].name == name
        assert not (suite[name].parent / f".{name}.partial").exists()
    sheets = sorted(p.name for p in suite["_preview"].glob("*.png"))
    # the five original datasets' sheets; families added later (registry) bring their own
    assert {"synth_attr_test.png", "synth_attr_train.png", "synth_attr_val.png", "synth_det_train.png",
            "synth_det_val.png", "synth_parsing_train.png", "synth_parsing_val.png",
            "synth_pose_train.png", "synth_pose_val.png", "synth_reid.png"} <= set(sheets)
    for spec in synth_specs().values():  # every dataset with a preview hook drew at least one sheet
        if spec.preview is not None:
            assert any(s == f"{spec.name}.png" or s.startswith(f"{spec.name}_") for s in sheets), spec.name
    assert all((suite["_preview"] / s).stat().st_size > 5000 for s in sheets)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_suite(tmp_path / "a", seed=7, fraction=0.02)
    b = write_suite(tmp_path / "b", seed=7, fraction=0.02)
    c = write_suite(tmp_path / "c", seed=8, fraction=0.02, datasets=["synth_pose", "synth_reid"])
    for name in DATASETS:
        da, db = _tree_digest(a[name]), _tree_digest(b[name])
        assert da == db and len(da) >= 4, name
    for name in ("synth_pose", "synth_reid"):
        ja = {v for k, v in _tree_digest(a[name]).items() if k.endswith(".jpg")}
        jc = {v for k, v in _tree_digest(c[name]).items() if k.endswith(".jpg")}
        assert ja and jc and ja.isdisjoint(jc), name  # no image repeats under another seed


def test_pose_reads_back_with_consistent_keypoints(suite):
    card = get_dataset_card("synth_pose")
    assert tuple(card.keypoints.names) == COCO_KEYPOINTS
    assert [tuple(p) for p in card.keypoints.flip_pairs] == list(COCO_FLIP_PAIRS)
    assert [tuple(p) for p in card.keypoints.skeleton] == list(COCO_SKELETON)
    vis = []
    for split, n in COUNTS["synth_pose"].items():
        ds = read_split("synth_pose", split, suite["synth_pose"])
        assert len(ds) == n and ds.extra["num_images"] == n
        for s in ds.samples:
            kp = s.keypoints
            assert kp.shape == (17, 3) and set(np.unique(kp[:, 2])) <= {0.0, 1.0, 2.0}
            assert np.all(kp[kp[:, 2] == 0] == 0)  # COCO: unlabelled keypoints are [0, 0, 0]
            lab = kp[kp[:, 2] > 0]
            x, y, w, h = s.bbox
            assert np.all((lab[:, 0] >= x - 1) & (lab[:, 0] <= x + w + 1))  # inside the person box
            assert np.all((lab[:, 1] >= y - 1) & (lab[:, 1] <= y + h + 1))
            assert np.all((lab[:, 0] >= 0) & (lab[:, 0] < s.width) & (lab[:, 1] >= 0) & (lab[:, 1] < s.height))
            assert 0 < s.area <= w * h + 1
            assert 96 <= s.width <= 128 and 128 <= s.height <= 160
            vis.append(kp[:, 2])
    v = np.concatenate(vis)
    assert (v == 2).mean() > 0.6 and (v == 1).mean() > 0.05 and (v == 0).any()


def test_parsing_reads_back_with_the_expected_classes(suite):
    seen: set[int] = set()
    for split, n in COUNTS["synth_parsing"].items():
        ds = read_split("synth_parsing", split, suite["synth_parsing"])
        assert len(ds) == n
        for s in ds.samples:
            img, lab = load_rgb(s.image), load_label(s.label)
            assert img.shape[:2] == lab.shape
            classes = set(np.unique(lab).tolist())
            assert classes <= LIP_USED
            assert {0, 5, 13} <= classes  # background, upper clothes, face/neck in every image
            assert classes & {9, 12} and classes & {1, 2}  # a lower garment; hair or hat
            seen |= classes
    assert seen == LIP_USED


def test_reid_layout_identities_and_cameras(suite):
    root = suite["synth_reid"]
    train = read_split("synth_reid", "train", root)
    test = read_split("synth_reid", "test", root)
    c = COUNTS["synth_reid"]
    assert len(train) == c["train_ids"] * c["imgs_per_id"]
    assert len({s.pid for s in train.samples}) == c["train_ids"]
    query = [s for s in test.samples if s.role == "query"]
    gallery = [s for s in test.samples if s.role == "gallery"]
    test_ids = {s.pid for s in query}
    assert len(test_ids) == c["test_ids"] and len(query) == 2 * c["test_ids"]
    assert test_ids.isdisjoint({s.pid for s in train.samples})
    assert any(s.pid == 0 for s in gallery)  # distractors are kept
    for pid in test_ids:
        cams = {s.camid for s in test.samples if s.pid == pid}
        assert len(cams) >= 3
        for q in (s for s in query if s.pid == pid):  # every query has a cross-camera match
            assert any(g.pid == pid and g.camid != q.camid for g in gallery)
    for pid in {s.pid for s in train.samples}:
        assert len({s.camid for s in train.samples if s.pid == pid}) >= 3
    junk = [f for f in (root / "bounding_box_test").iterdir() if parse_market_name(f.name)[0] == -1]
    assert junk and not any(s.pid == -1 for s in test.samples)  # on disk, dropped by the reader
    assert load_rgb(query[0].image).shape == (128, 64, 3)


def test_attributes_read_back_exactly_as_recorded(tmp_path):
    counts = {"train": 24, "val": 6, "test": 10}
    out = write_attributes(tmp_path, counts, seed=3)
    assert tuple(get_dataset_card("synth_attr").attributes) == ATTRIBUTES
    start = 0
    for split, n in counts.items():
        ds = read_split("synth_attr", split, tmp_path)
        assert len(ds) == n
        got = np.stack([s.labels for s in ds.samples])
        assert np.array_equal(got, out["labels"][start:start + n])
        assert [s.image.name for s in ds.samples] == out["names"][start:start + n]
        start += n
    lab = dict(zip(ATTRIBUTES, out["labels"].T, strict=True))
    one = lambda *names: np.all(sum(lab[a].astype(int) for a in names) == 1)  # noqa: E731
    assert one("Front", "Side", "Back") and one("ShortSleeve", "LongSleeve") and one("Trousers", "Shorts", "Skirt&Dress")
    assert not np.any(lab["UpperRed"] & lab["UpperBlue"])


def test_attribute_suite_has_both_values_of_every_attribute(suite):
    ds = read_split("synth_attr", "train", suite["synth_attr"])
    rate = np.stack([s.labels for s in ds.samples]).mean(0)
    assert len(ds) == COUNTS["synth_attr"]["train"]
    assert np.all((rate > 0) & (rate < 1)), dict(zip(ATTRIBUTES, rate, strict=True))


def test_detection_boxes_are_consistent(suite):
    n_ignore = n_outside = n_occluded = n_people = 0
    for split, n in COUNTS["synth_det"].items():
        ds = read_split("synth_det", split, suite["synth_det"])
        assert len(ds) == n
        for s in ds.samples:
            img = load_rgb(s.image)
            h, w = img.shape[:2]
            assert 256 <= h <= 320 and 256 <= w <= 320
            f, v, hb = s.boxes, s.visible, s.heads
            assert len(f) == len(v) == len(hb) and np.all(f[:, 2:] > 0) and np.all(v[:, 2:] > 0)
            # visible box inside the full box and the image; head box inside the full box
            assert np.all(v[:, :2] >= f[:, :2] - 1) and np.all(v[:, :2] + v[:, 2:] <= f[:, :2] + f[:, 2:] + 1)
            assert np.all(v[:, :2] >= 0) and np.all(v[:, 0] + v[:, 2] <= w) and np.all(v[:, 1] + v[:, 3] <= h)
            assert np.all(hb[:, :2] >= f[:, :2] - 1) and np.all(hb[:, :2] + hb[:, 2:] <= f[:, :2] + f[:, 2:] + 1)
            assert np.all(hb[:, 3] < f[:, 3])
            n_people += len(f)
            n_ignore += len(s.ignore)
            n_outside += int(np.sum((f[:, 0] < 0) | (f[:, 1] < 0) | (f[:, 0] + f[:, 2] > w) | (f[:, 1] + f[:, 3] > h)))
            n_occluded += int(np.sum(v[:, 2] * v[:, 3] < 0.7 * f[:, 2] * f[:, 3]))
    assert n_people >= 2 * sum(COUNTS["synth_det"].values())
    assert n_ignore > 0 and n_outside > 0 and n_occluded > 0


@pytest.mark.parametrize("name", DATASETS)
def test_data_check_passes(suite, name):
    from hcbench.data.check import check_dataset

    report = check_dataset(name, root=suite[name])
    assert report.ok, report.problems
    assert all(row["records"] for row in report.summary.values())
