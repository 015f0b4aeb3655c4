"""``hcbench data check`` against impossible values, over the formats (issue 12 items 4 and 9).

Each case tampers a good copy in its real on-disk format and expects the check to either reject
the file (a reader error naming file and record) or count the problem (a check problem naming
file and record). Whatever the case, a reader never drops an annotation without the check saying
so: records + skipped == annotations in the file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from hcbench.cli import main
from hcbench.data.cards import load_dataset_card
from hcbench.data.check import SAMPLE, check_dataset
from hcbench.data.readers.detection import write_citypersons, write_crowdhuman
from hcbench.data.types import DetectionSample

REPO = Path(__file__).resolve().parents[2]


def _add_card(cards: Path, base: str, name: str, splits: dict[str, tuple[dict, int | None]], **options) -> None:
    card = load_dataset_card(REPO / "datasets" / f"{base}.yaml")
    data = card.model_dump(mode="json", exclude_none=True)
    data["name"] = name
    data["splits"] = {k: {"files": f, **({"size": n} if n is not None else {})} for k, (f, n) in splits.items()}
    data["options"] = {**data.get("options", {}), **options}
    (cards / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture
def cards(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cards"
    folder.mkdir()
    monkeypatch.setenv("HCBENCH_DATASETS", str(folder))
    return folder


# --------------------------------------------------------------------------- formats
def coco_copy(tmp: Path, cards: Path, name: str) -> tuple[Path, Path]:
    root = tmp / "coco"
    shutil.copytree(REPO / "tests" / "real-samples" / "coco", root)
    _add_card(cards, "coco", name, {"val2017": ({"annotations": "test_coco.json", "images": "."}, None)})
    return root, root / "test_coco.json"


def odgt_copy(tmp: Path, cards: Path, name: str) -> tuple[Path, Path]:
    root = tmp / "crowdhuman"
    items = []
    for k in range(3):
        boxes = np.array([[4, 4, 10, 20], [20, 2, 8, 24]], np.float32)
        items.append((np.full((32, 48, 3), 40 * k, np.uint8),
                      DetectionSample(Path(f"im{k}.jpg"), f"im{k}", boxes, boxes.copy(), np.zeros((0, 4), np.float32),
                                      heads=boxes[:, :4] * 0.5)))
    files = write_crowdhuman(root, "val", items)
    _add_card(cards, "crowdhuman", name, {"val": (files, 3)})
    return root, root / files["annotations"]


def citypersons_copy(tmp: Path, cards: Path, name: str, bbs_w: float = 10.0,
                     image_size: tuple[int, int] = (48, 32)) -> tuple[Path, Path]:
    root = tmp / "citypersons"
    items = []
    for k in range(2):
        boxes = np.array([[4, 4, bbs_w, 20]], np.float32)
        items.append((np.full((32, 48, 3), 60 * k, np.uint8),
                      DetectionSample(Path("x"), f"aachen_00000{k}_000019_leftImg8bit.png", boxes, boxes.copy(),
                                      np.zeros((0, 4), np.float32), labels=np.array([1]))))
    files = write_citypersons(root, "val", items)
    _add_card(cards, "citypersons", name, {"val": (files, 2)}, image_size=list(image_size))
    return root, root / files["annotations"]


def _json_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))
    return apply


def _odgt_edit(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        edit(lines[1])
        path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return apply


def _ann(i: int, key: str, j: int, value) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["annotations"][i][key][j] = value
    return edit


def _image(i: int, key: str, value) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        doc["images"][i][key] = value
    return edit


def _gtbox(key: str, value) -> Callable[[dict], None]:
    def edit(line: dict) -> None:
        line["gtboxes"][0][key] = value
    return edit


# (id, copy, tamper, expected words in the report, "reject" (reader error) | "count" (check problem))
CASES = [
    ("coco-width-declared-wrong", coco_copy, _json_edit(_image(2, "width", 400)),
     ["000000196141.jpg [record image_id=196141 ann_id=", "image is 640x429 but the annotation file declares 400x429"],
     "count"),
    ("coco-visibility-3", coco_copy, _json_edit(_ann(0, "keypoints", 2, 3)),
     ["test_coco.json [record image_id=785", "keypoint visibility outside {0, 1, 2}"], "count"),
    ("coco-keypoint-far-outside", coco_copy, _json_edit(lambda d: d["annotations"][0]["keypoints"].__setitem__(
        slice(15, 18), [5000.0, 100.0, 2])), ["[record image_id=785", "far outside the image"], "count"),
    ("coco-negative-box", coco_copy, _json_edit(_ann(1, "bbox", 2, -5.0)),
     ["test_coco.json", "negative width or height"], "reject"),
    ("coco-string-keypoint", coco_copy, _json_edit(_ann(1, "keypoints", 0, "12")),
     ["test_coco.json", "'12'", "not a finite number"], "reject"),
    ("coco-string-width", coco_copy, _json_edit(_image(0, "width", "640")),
     ["test_coco.json", "'640'", "not positive"], "reject"),
    ("odgt-string-box", odgt_copy, _odgt_edit(_gtbox("fbox", ["4", "4", "10", "20"])),
     ["annotation_val.odgt", "line 2", "not numeric"], "reject"),
    ("odgt-negative-box", odgt_copy, _odgt_edit(_gtbox("fbox", [4, 4, -10, 20])),
     ["annotation_val.odgt [record image_id=im1]", "negative width or height"], "count"),
    ("citypersons-negative-box", lambda t, c, n: citypersons_copy(t, c, n, bbs_w=-6.0), lambda p: None,
     ["anno_val.mat [record image_id=aachen_000000_000019_leftImg8bit.png]", "negative width or height"], "count"),
    ("citypersons-declared-size-wrong", lambda t, c, n: citypersons_copy(t, c, n, image_size=(2048, 1024)),
     lambda p: None, ["image is 48x32 but the annotation file declares 2048x1024"], "count"),
]


@pytest.mark.parametrize("case, copy, tamper, words, kind", CASES, ids=[c[0] for c in CASES])
def test_impossible_values_are_rejected_or_counted(tmp_path, cards, capsys, case, copy, tamper, words, kind):
    name = "t_" + case.replace("-", "_")
    root, path = copy(tmp_path, cards, name)
    good = check_dataset(name, root, quiet=True)
    if not case.startswith("citypersons"):  # the citypersons cases are built bad
        assert good.ok, good.problems
    tamper(path)
    rep = check_dataset(name, root, quiet=True)
    text = "\n".join(rep.problems)
    assert not rep.ok and all(w in text for w in words), text
    split = next(iter(rep.summary))
    if kind == "reject":  # the reader refused the file: no records, one problem naming file and record
        assert rep.summary[split]["records"] is None and len(rep.problems) == 1
    else:  # read, and the check counted it
        assert rep.summary[split]["records"] is not None
    code = main(["data", "check", name, "--root", str(root)])
    out = capsys.readouterr().out
    assert code == 1 and words[-1] in out and "Traceback" not in out


def test_a_wrong_image_size_drops_no_instance_silently(tmp_path, cards):
    """The case from issue 12: a COCO image 640 wide declared 400 wide. Its boxes beyond x=399
    vanish when clipped to the declared size; the check says so (records + skipped = annotations)."""
    root, path = coco_copy(tmp_path, cards, "t_drop")
    doc = json.loads(path.read_text())
    n_ann = len(doc["annotations"])
    base = check_dataset("t_drop", root, quiet=True)
    assert base.summary["val2017"]["records"] + base.summary["val2017"].get("skipped", 0) == n_ann
    _json_edit(_image(2, "width", 400))(path)
    rep = check_dataset("t_drop", root, quiet=True)
    row = rep.summary["val2017"]
    assert row["records"] < base.summary["val2017"]["records"]
    assert row["records"] + row["skipped"] == n_ann
    assert any("empty box" in n and "not used as records" in n for n in rep.notes), rep.notes
    assert sum("declares 400x429" in p for p in rep.problems) == 1  # one problem per image, not per instance


def test_default_checks_a_sample_and_full_checks_every_image(tmp_path, cards, monkeypatch):
    import hcbench.data.check as check

    root, _ = odgt_copy(tmp_path, cards, "t_sample")
    monkeypatch.setattr(check, "SAMPLE", 2)
    rep = check_dataset("t_sample", root, quiet=True)
    assert rep.summary["val"]["images_checked"] == 2 and rep.summary["val"]["images"] == 3
    assert any("decoded 2 of 3 images" in n and "--full" in n for n in rep.notes)
    rep = check_dataset("t_sample", root, quiet=True, full=True)
    assert rep.summary["val"]["images_checked"] == 3 and "images" not in rep.summary["val"]
    assert check._pick(10, 4) == [0, 3, 6, 9] and check._pick(3, 5) == [0, 1, 2] and SAMPLE == 200


# --------------------------------------------------------------------------- synthetic cards
def test_every_synthetic_card_declares_its_smoke_sizes():
    from hcbench.data.cards import get_dataset_card
    from hcbench.families.base import families

    for family in families():
        for spec in family.synthetic:
            card = get_dataset_card(spec.name)
            missing = [s for s, sp in card.splits.items() if sp.size is None]
            assert not missing, f"{spec.name}: splits {missing} have no size (as `data synth --size smoke` writes)"


def test_a_synthetic_copy_of_another_size_is_a_note_not_a_problem(tmp_path):
    from hcbench.synth import write_suite

    out = write_suite(tmp_path, "smoke", seed=0, datasets=["synth_det"], fraction=0.05)
    rep = check_dataset("synth_det", out["synth_det"], quiet=True)
    assert rep.ok, rep.problems
    assert any("this copy is size smoke x 0.05" in n for n in rep.notes), rep.notes
