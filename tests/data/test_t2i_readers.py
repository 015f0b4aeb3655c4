"""CUHK-PEDES, ICFG-PEDES and RSTPReid readers on small files written in each published schema,
the writer's round trip, ``data check`` counts, and bad records named by file and record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hcbench.data.cards import get_dataset_card, load_dataset_card
from hcbench.data.check import check_dataset
from hcbench.data.readers.t2i import read_cuhkpedes, read_icfgpedes, read_rstpreid, split_counts, write_t2i
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError

REPO = Path(__file__).resolve().parents[2]
IMG = np.full((24, 8, 3), 90, np.uint8)


def _images(root: Path, paths: list[str]) -> None:
    for p in paths:
        write_image(root / "imgs" / p, IMG)


# the published schemas, field for field (values invented)
CUHK = [
    {"split": "train", "captions": ["A man in a black jacket.", "The man wears black."], "file_path": "CUHK01/0363004.png",
     "processed_tokens": [["a", "man"], ["the", "man"]], "id": 1},
    {"split": "train", "captions": ["A woman with a red bag."], "file_path": "train_query/p8848_s17661.jpg",
     "processed_tokens": [["a", "woman"]], "id": 2},
    {"split": "val", "captions": ["Blue shirt, grey pants.", "A man in blue."], "file_path": "test_query/p5_s1.jpg",
     "processed_tokens": [["blue"], ["a"]], "id": 11004},
    {"split": "test", "captions": ["She has long hair.", "A girl in a dress."], "file_path": "CUHK03/1_2.jpg",
     "processed_tokens": [["she"], ["a"]], "id": 12004},
    {"split": "test", "captions": ["A man with a backpack.", "He carries a backpack.", "Backpack."],
     "file_path": "Market/0002_c1s1_000451_03.jpg", "processed_tokens": [["a"], ["he"], ["backpack"]], "id": 12005},
]
ICFG = [
    {"id": 0, "file_path": "train/0001/0001_000_01_0303morning_0015_0.jpg", "captions": ["A man in white."],
     "processed_tokens": [["a", "man", "in", "white"]], "split": "train"},
    {"id": 3102, "file_path": "test/3103/3103_000_03_0303noon_0010_0.jpg", "captions": ["A lady in pink."],
     "processed_tokens": [["a", "lady", "in", "pink"]], "split": "test"},
    {"id": 3102, "file_path": "test/3103/3103_004_07_0303noon_0020_0.jpg", "captions": ["Pink coat, black boots."],
     "processed_tokens": [["pink", "coat"]], "split": "test"},
]
RSTP = [
    {"id": 0, "img_path": "0000_c14_0031.jpg", "captions": ["A man in a gray coat.", "The man wears glasses."],
     "split": "train"},
    {"id": 3701, "img_path": "3701_c5_0002.jpg", "captions": ["A woman with an umbrella.", "She holds an umbrella."],
     "split": "val"},
    {"id": 3901, "img_path": "3901_c14_0004.jpg", "captions": ["A boy in shorts.", "The boy wears red shorts."],
     "split": "test"},
]


def _write(root: Path, name: str, records: list[dict], key: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(json.dumps(records))
    _images(root, [r[key] for r in records])
    return root


def test_cuhkpedes(tmp_path: Path):
    root = _write(tmp_path, "reid_raw.json", CUHK, "file_path")
    card = get_dataset_card("cuhkpedes")
    train = read_cuhkpedes(root, "train", card)
    assert [(s.pid, s.file_path, len(s.captions)) for s in train.samples] == [
        (1, "CUHK01/0363004.png", 2), (2, "train_query/p8848_s17661.jpg", 1)]
    assert train.samples[0].image == root / "imgs" / "CUHK01" / "0363004.png"
    assert train.samples[0].captions == ("A man in a black jacket.", "The man wears black.")
    assert train.family == "t2i" and train.files == [root / "reid_raw.json"]
    test = read_cuhkpedes(root, "test", card)
    assert split_counts(test.samples) == {"identities": 2, "images": 2, "captions": 5}
    assert [s.image_id for s in test.samples] == [3, 4]  # position in the file
    assert split_counts(read_cuhkpedes(root, "val", card).samples)["captions"] == 2
    assert len(read_cuhkpedes(root, "test", card, limit=1)) == 1


def test_icfgpedes(tmp_path: Path):
    root = _write(tmp_path, "ICFG-PEDES.json", ICFG, "file_path")
    card = get_dataset_card("icfgpedes")
    assert [s.pid for s in read_icfgpedes(root, "train", card).samples] == [0]
    test = read_icfgpedes(root, "test", card)
    assert split_counts(test.samples) == {"identities": 1, "images": 2, "captions": 2}
    assert set(card.splits) == {"train", "test"}


def test_rstpreid(tmp_path: Path):
    root = _write(tmp_path, "data_captions.json", RSTP, "img_path")
    card = get_dataset_card("rstpreid")
    for split, pid in (("train", 0), ("val", 3701), ("test", 3901)):
        ds = read_rstpreid(root, split, card)
        assert [s.pid for s in ds.samples] == [pid] and len(ds.samples[0].captions) == 2
    assert read_rstpreid(root, "test", card).samples[0].image == root / "imgs" / "3901_c14_0004.jpg"


@pytest.mark.parametrize("fmt,name,key", [("cuhkpedes", "reid_raw.json", "file_path"),
                                          ("icfgpedes", "ICFG-PEDES.json", "file_path"),
                                          ("rstpreid", "data_captions.json", "img_path")])
def test_writer_round_trip(tmp_path: Path, fmt: str, name: str, key: str):
    items = [(IMG, 5, ["a man.", "the man."], "train", "a/1.jpg"), (IMG, 9, ["a woman."], "test", "b/2.jpg"),
             (IMG, 9, ["she again."], "test", "b/3.jpg")]
    files = write_t2i(tmp_path, items, fmt)
    assert files == {"train": {"annotations": name, "images": "imgs"}, "test": {"annotations": name, "images": "imgs"}}
    recs = json.loads((tmp_path / name).read_text())
    assert set(recs[0]) == {"split", "captions", key, "id"} | ({"processed_tokens"} if fmt != "rstpreid" else set())
    reader = {"cuhkpedes": read_cuhkpedes, "icfgpedes": read_icfgpedes, "rstpreid": read_rstpreid}[fmt]
    test = reader(tmp_path, "test", get_dataset_card(fmt))
    assert [(s.pid, s.captions, s.file_path) for s in test.samples] == [(9, ("a woman.",), "b/2.jpg"),
                                                                       (9, ("she again.",), "b/3.jpg")]


@pytest.mark.parametrize("change,message,record", [
    (lambda r: r.update(captions=[]), "missing caption", "1 (file_path='train_query/p8848_s17661.jpg')"),
    (lambda r: r.pop("captions"), "missing caption", "1 (file_path="),
    (lambda r: r.update(captions=["ok", "  "]), "caption 1 is empty", "1 (file_path="),
    (lambda r: r.update(split="training"), "unknown split 'training'", "1 (file_path="),
    (lambda r: r.update(id="2"), "'id' must be an integer", "1 (file_path="),
    (lambda r: r.pop("file_path"), "missing image path 'file_path'", "[record 1]"),
])
def test_bad_records_name_file_and_record(tmp_path: Path, change, message: str, record: str):
    recs = json.loads(json.dumps(CUHK))
    change(recs[1])
    root = _write(tmp_path, "reid_raw.json", [r for r in CUHK], "file_path")
    (root / "reid_raw.json").write_text(json.dumps(recs))
    with pytest.raises(DataFormatError) as e:
        read_cuhkpedes(root, "train", get_dataset_card("cuhkpedes"))
    assert str(root / "reid_raw.json") in str(e.value) and message in str(e.value) and record in str(e.value)


def test_missing_image_and_bad_files(tmp_path: Path):
    root = _write(tmp_path, "data_captions.json", RSTP, "img_path")
    (root / "imgs" / "3901_c14_0004.jpg").unlink()
    card = get_dataset_card("rstpreid")
    with pytest.raises(DataFormatError, match=r"data_captions.json \[record 2 \(img_path='3901_c14_0004.jpg'\)\]: "
                                              r"image missing on disk"):
        read_rstpreid(root, "test", card)
    assert len(read_rstpreid(root, "train", card)) == 1  # other splits still read
    (root / "data_captions.json").write_text("{not json")
    with pytest.raises(DataFormatError, match="data_captions.json: not valid JSON"):
        read_rstpreid(root, "train", card)
    (root / "data_captions.json").write_text(json.dumps({"annotations": []}))
    with pytest.raises(DataFormatError, match="expected a JSON list"):
        read_rstpreid(root, "train", card)
    with pytest.raises(FileNotFoundError, match="reid_raw.json"):
        read_cuhkpedes(tmp_path / "nowhere", "train", get_dataset_card("cuhkpedes"))


def test_data_check_counts(tmp_path: Path, monkeypatch):
    """``data check`` compares images (split size), identities and captions with the card."""
    root = _write(tmp_path / "data", "reid_raw.json", CUHK, "file_path")
    cards = tmp_path / "cards"
    cards.mkdir()
    data = load_dataset_card(REPO / "datasets" / "cuhkpedes.yaml").model_dump(mode="json", exclude_none=True)
    data["name"] = "tiny_pedes"
    for split, n in (("train", 2), ("val", 1), ("test", 2)):
        data["splits"][split]["size"] = n
    data["options"]["counts"] = {"train": {"identities": 2, "captions": 3}, "val": {"identities": 1, "captions": 2},
                                 "test": {"identities": 2, "captions": 6}}  # test really has 5
    (cards / "tiny_pedes.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("HCBENCH_DATASETS", str(cards))
    rep = check_dataset("tiny_pedes", root)
    assert rep.summary["train"]["records"] == 2 and rep.summary["test"]["captions"] == 5
    assert rep.problems == [f"{root / 'reid_raw.json'}: wrong count: split 'test' has 5 captions, the card expects 6"]
    (root / "imgs" / "CUHK03" / "1_2.jpg").write_bytes(b"not an image")
    rep = check_dataset("tiny_pedes", root)
    assert any("CUHK03/1_2.jpg" in p and "record image_id=3" in p for p in rep.problems), rep.problems


def test_real_cards_declare_the_published_sizes():
    c = get_dataset_card("cuhkpedes")
    assert [c.splits[s].size for s in ("train", "val", "test")] == [34054, 3078, 3074]
    assert c.options["counts"]["train"] == {"identities": 11003, "captions": 68126}
    i = get_dataset_card("icfgpedes")
    assert [i.splits[s].size for s in ("train", "test")] == [34674, 19848]
    assert [i.options["counts"][s]["identities"] for s in ("train", "test")] == [3102, 1000]
    r = get_dataset_card("rstpreid")
    assert sum(r.splits[s].size for s in r.splits) == 20505
    assert sum(r.options["counts"][s]["identities"] for s in r.splits) == 4101
    assert all(r.options["counts"][s]["captions"] == 2 * r.splits[s].size for s in r.splits)
