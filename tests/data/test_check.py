"""``hcbench data check`` on good copies and on broken ones: every message names the file and record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from hcbench.cli import main
from hcbench.data.cards import list_dataset_cards, load_dataset_card
from hcbench.data.check import check_dataset
from hcbench.data.readers.detection import write_crowdhuman
from hcbench.data.readers.parsing import write_lip
from hcbench.data.readers.reid import write_market1501
from hcbench.data.transforms.image import write_label
from hcbench.data.types import DetectionSample

REPO = Path(__file__).resolve().parents[2]
REAL_SAMPLES = REPO / "tests" / "real-samples"


def _smooth(h: int, w: int, k: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy * 255 // h, xx * 255 // w, np.full((h, w), 30 * k)], -1).astype(np.uint8)


def _add_card(cards: Path, base: str, name: str, splits: dict[str, tuple[dict, int | None]], **options) -> None:
    """A card derived from the real one (same names/classes/format) for a tiny copy."""
    card = load_dataset_card(REPO / "datasets" / f"{base}.yaml")
    data = card.model_dump(mode="json", exclude_none=True)
    data["name"] = name
    data["splits"] = {k: {"files": f, **({"size": n} if n is not None else {})} for k, (f, n) in splits.items()}
    data["options"] = {**data.get("options", {}), **options}
    (cards / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def env(tmp_path: Path, monkeypatch):
    cards = tmp_path / "cards"
    cards.mkdir()
    monkeypatch.setenv("HCBENCH_DATASETS", str(cards))
    return tmp_path, cards


def _run(capsys, name: str, root: Path, *extra: str) -> tuple[int, str]:
    code = main(["data", "check", name, "--root", str(root), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


# --------------------------------------------------------------------------- parsing
def _lip_copy(env) -> Path:
    tmp, cards = env
    root = tmp / "lip"
    items = []
    for k in range(3):
        label = np.zeros((20, 12), np.uint8)
        label[5:15, 2:6], label[5:15, 6:10], label[0, 0] = 14, 15, 255
        items.append((_smooth(20, 12, k), label, f"im{k}"))
    files = write_lip(root, "val", items)
    _add_card(cards, "lip", "tiny_lip", {"val": (files, 3)})
    return root


def test_good_parsing_copy_passes(env, capsys):
    root = _lip_copy(env)
    code, out = _run(capsys, "tiny_lip", root)
    assert code == 0, out
    assert "OK: every check passed" in out and "val" in out
    rep = check_dataset("tiny_lip", root)
    assert rep.ok and rep.summary["val"] == {"records": 3, "expected": 3, "images_checked": 3, "problems": 0}


def test_missing_file(env, capsys):
    root = _lip_copy(env)
    (root / "val_id.txt").unlink()
    code, out = _run(capsys, "tiny_lip", root)
    assert code == 1
    assert f"{root / 'val_id.txt'}: missing file (ids of split 'val')" in out


def test_label_value_out_of_range(env, capsys):
    root = _lip_copy(env)
    label = np.zeros((20, 12), np.uint8)
    label[3, 3], label[4, 4] = 25, 20  # LIP has classes 0..19
    write_label(root / "val_segmentations" / "im1.png", label)
    code, out = _run(capsys, "tiny_lip", root)
    assert code == 1
    assert (f"{root / 'val_segmentations' / 'im1.png'} [record sample_id=im1]: label values [20, 25] "
            "outside [0, 20) and not the ignore value 255") in out
    rep = check_dataset("tiny_lip", root)
    assert len(rep.problems) == 1 and rep.summary["val"]["problems"] == 1


def test_label_size_mismatch_and_wrong_count(env, capsys):
    root = _lip_copy(env)
    write_label(root / "val_segmentations" / "im2.png", np.zeros((7, 7), np.uint8))
    (root / "val_id.txt").write_text("im0\nim1\nim2\n")
    tmp, cards = env  # (a new card name: cards are cached per folder)
    _add_card(cards, "lip", "tiny_lip4", {"val": ({"images": "val_images", "labels": "val_segmentations",
                                                    "ids": "val_id.txt"}, 4)})
    code, out = _run(capsys, "tiny_lip4", root)
    assert code == 1
    assert f"{root / 'val_id.txt'}: wrong count: split 'val' has 3 records, the card expects 4" in out
    assert f"{root / 'val_segmentations' / 'im2.png'} [record im2]: label is 7x7 (WxH) but the image" in out


# --------------------------------------------------------------------------- detection
def _crowdhuman_copy(env) -> Path:
    tmp, cards = env
    root = tmp / "crowdhuman"
    boxes = np.array([[2, 3, 10, 20]], np.float32)
    items = [(_smooth(32, 48, k), DetectionSample(Path(), f"27327{k},c9db000d5146c15", boxes, boxes,
                                                   np.zeros((0, 4), np.float32))) for k in range(3)]
    files = write_crowdhuman(root, "val", items)
    _add_card(cards, "crowdhuman", "tiny_crowdhuman", {"val": (files, 3)})
    return root


def test_truncated_jpeg_and_limit(env, capsys):
    root = _crowdhuman_copy(env)
    assert _run(capsys, "tiny_crowdhuman", root)[0] == 0
    img = root / "Images" / "273271,c9db000d5146c15.jpg"
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    code, out = _run(capsys, "tiny_crowdhuman", root)
    assert code == 1
    assert f"{img}: cannot decode image: " in out and "truncated" in out
    assert "[record image_id=273271,c9db000d5146c15]" in out
    # --limit 1 decodes only the first image of each split, so the truncated second one is not seen
    code, out = _run(capsys, "tiny_crowdhuman", root, "--limit", "1")
    assert code == 0, out
    img.unlink()
    code, out = _run(capsys, "tiny_crowdhuman", root)
    assert code == 1 and f"{img} [record image_id=273271,c9db000d5146c15]: image missing" in out


def test_odgt_line_not_json(env, capsys):
    root = _crowdhuman_copy(env)
    ann = root / "annotation_val.odgt"
    lines = ann.read_text().splitlines()
    lines[1] = lines[1][:-5]
    ann.write_text("\n".join(lines) + "\n")
    code, out = _run(capsys, "tiny_crowdhuman", root)
    assert code == 1
    assert f"{ann} [record line 2]: not JSON: " in out


# --------------------------------------------------------------------------- pose (the pose reader)
@pytest.fixture
def coco_copy(env):
    src = REAL_SAMPLES / "coco"
    if not (src / "test_coco.json").is_file():
        pytest.skip(f"real sample files not found at {src}")
    tmp, cards = env
    root = tmp / "coco"
    shutil.copytree(src, root)
    files = {"annotations": "test_coco.json", "images": "."}
    _add_card(cards, "coco", "tiny_coco", {"val2017": (files, None)})
    return root


def test_real_coco_sample_passes(coco_copy, capsys):
    code, out = _run(capsys, "tiny_coco", coco_copy)
    assert code == 0, out
    rep = check_dataset("tiny_coco", coco_copy)
    assert rep.summary["val2017"]["images_checked"] == 4 and rep.summary["val2017"]["records"] > 0


def test_coco_record_with_16_keypoints(coco_copy, capsys):
    path = coco_copy / "test_coco.json"
    doc = json.loads(path.read_text())
    ann = doc["annotations"][1]
    ann["keypoints"] = ann["keypoints"][:48]  # 16 keypoints in a 17-keypoint file
    path.write_text(json.dumps(doc))
    code, out = _run(capsys, "tiny_coco", coco_copy)
    assert code == 1
    assert f"{path} [record annotation id={ann['id']}]" in out and "48 values" in out


# --------------------------------------------------------------------------- reid role counts
def test_reid_role_counts(env, capsys):
    tmp, cards = env
    root = tmp / "market"
    img = _smooth(16, 8, 1)
    files = write_market1501(root, [(img, 1, 0, "train"), (img, 2, 1, "query"), (img, 2, 2, "gallery"),
                                    (img, -1, 2, "gallery")])
    splits = {"train": (files["train"], 1), "test": (files["test"], 2)}
    # cards are cached per folder: write both variants before the first look-up
    _add_card(cards, "market1501", "tiny_market", splits, role_sizes={"test": {"query": 1, "gallery": 1}})
    _add_card(cards, "market1501", "tiny_market2", splits, role_sizes={"test": {"query": 2, "gallery": 1}})
    code, out = _run(capsys, "tiny_market", root)
    assert code == 0, out
    code, out = _run(capsys, "tiny_market2", root)
    assert code == 1 and "wrong count: split 'test' has 1 query images, the card expects 2" in out


# --------------------------------------------------------------------------- every card
def test_every_card_is_checkable_on_an_empty_root(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HCBENCH_DATASETS", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    cards = list_dataset_cards()
    assert {"lip", "cihp", "h36m_parsing", "crowdhuman", "citypersons", "market1501", "msmt17", "cuhk03",
            "pa100k", "peta", "rapv2"} <= {c.name for c in cards}
    for card in cards:
        rep = check_dataset(card.name, empty)
        assert not rep.ok and set(rep.summary) == set(card.splits), card.name
        assert all("missing file" in p for p in rep.problems), (card.name, rep.problems)
    rep = check_dataset("lip", tmp_path / "nowhere")
    assert rep.problems == [f"{tmp_path / 'nowhere'}: dataset root folder missing (pass --root DIR or set $HCBENCH_DATA)"]
