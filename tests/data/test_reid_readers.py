"""Market-1501, MSMT17 and CUHK03-NP readers: round trips, real naming/layouts, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.reid import (
    market_name,
    msmt_camera,
    parse_market_name,
    read_cuhk03_np,
    read_market1501,
    read_msmt17,
    write_cuhk03_np,
    write_market1501,
    write_msmt17,
)
from hcbench.data.types import DataFormatError

IMG = np.full((16, 8, 3), 128, np.uint8)


def _card(name: str, splits: dict[str, dict], **options):
    card = get_dataset_card(name)
    first = next(iter(card.splits.values()))
    specs = {k: first.model_copy(update={"files": v, "size": None}) for k, v in splits.items()}
    return card.model_copy(update={"splits": specs, "options": {**card.options, **options}})


def _triples(ds):
    return [(s.pid, s.camid, s.role) for s in ds.samples]


def test_market_names():
    assert parse_market_name("0002_c1s1_000451_03.jpg") == (2, 1, 1, 451, 3)
    assert parse_market_name("-1_c3s2_012345_00.jpg") == (-1, 3, 2, 12345, 0)
    assert market_name(2, 0, frame=451, n=3) == "0002_c1s1_000451_03.jpg"
    assert market_name(-1, 5, frame=7) == "-1_c6s1_000007_01.jpg"
    with pytest.raises(ValueError, match="does not match"):
        parse_market_name("0002_c1_000451.jpg")


def test_market_round_trip(tmp_path: Path):
    items = [(IMG, 2, 0, "train"), (IMG, 2, 3, "train"), (IMG, 7, 5, "train"),
             (IMG, 11, 1, "query"), (IMG, 11, 4, "gallery"), (IMG, 0, 2, "gallery"), (IMG, -1, 1, "gallery")]
    files = write_market1501(tmp_path, items)
    card = get_dataset_card("market1501")
    assert files == {k: dict(v.files) for k, v in card.splits.items()}
    (tmp_path / "bounding_box_test" / "Thumbs.db").write_bytes(b"\0")  # the real folders have one
    c = _card("market1501", files)
    train = read_market1501(tmp_path, "train", c)
    assert _triples(train) == [(2, 0, "train"), (2, 3, "train"), (7, 5, "train")]
    assert train.samples[0].image == tmp_path / "bounding_box_train" / "0002_c1s1_000000_01.jpg"
    test = read_market1501(tmp_path, "test", c)
    assert _triples(test) == [(11, 1, "query"), (0, 2, "gallery"), (11, 4, "gallery")]  # junk dropped
    test = read_market1501(tmp_path, "test", _card("market1501", files, keep_junk=True))
    assert (-1, 1, "gallery") in _triples(test) and len(test) == 4
    assert train.meta.num_cameras == 6
    limited = read_market1501(tmp_path, "test", c, limit=1)
    assert [s.role for s in limited.samples] == ["query", "gallery"]  # limit applies per role


def test_market_bad_name_names_file(tmp_path: Path):
    files = write_market1501(tmp_path, [(IMG, 2, 0, "train")])
    (tmp_path / "bounding_box_train" / "0003_c1_x.jpg").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"bounding_box_train \[record 0003_c1_x\.jpg\]: file name"):
        read_market1501(tmp_path, "train", _card("market1501", files))
    (tmp_path / "bounding_box_train" / "0003_c1_x.jpg").unlink()
    (tmp_path / "bounding_box_train" / "0003_c8s1_000001_01.jpg").write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"\[record 0003_c8s1_000001_01\.jpg\]: camera 8 outside 1\.\.6"):
        read_market1501(tmp_path, "train", _card("market1501", files))


def test_msmt17_round_trip(tmp_path: Path):
    items = [(IMG, 0, 0, "train"), (IMG, 0, 14, "train"), (IMG, 1040, 3, "val"),
             (IMG, 5, 2, "query"), (IMG, 5, 9, "gallery"), (IMG, 6, 9, "gallery")]
    files = write_msmt17(tmp_path, items)
    assert files == {k: dict(v.files) for k, v in get_dataset_card("msmt17").splits.items()}
    first = (tmp_path / "list_train.txt").read_text().splitlines()[0]
    assert first == "0000/0000_000_01_0303morning_0000_0.jpg 0"
    assert msmt_camera("0000/0000_000_01_0303morning_0015_0.jpg") == 1
    c = _card("msmt17", files)
    train = read_msmt17(tmp_path, "train", c)
    assert _triples(train) == [(0, 0, "train"), (0, 14, "train"), (1040, 3, "train")]  # val joins train
    assert train.samples[2].image == tmp_path / "train" / "1040" / "1040_002_04_0303morning_0002_0.jpg"
    assert all(s.image.is_file() for s in train.samples)
    test = read_msmt17(tmp_path, "test", c)
    assert _triples(test) == [(5, 2, "query"), (5, 9, "gallery"), (6, 9, "gallery")]
    assert test.samples[0].image.parent.parent == tmp_path / "test"
    assert len(read_msmt17(tmp_path, "test", c, limit=1)) == 2


def test_msmt17_bad_lines(tmp_path: Path):
    files = write_msmt17(tmp_path, [(IMG, 0, 0, "train")])
    c = _card("msmt17", files)
    (tmp_path / "list_train.txt").write_text("0000/0000_000_01_0303morning_0000_0.jpg 0\n0000/x.jpg\n")
    with pytest.raises(DataFormatError, match=r"list_train\.txt \[record line 2\]: expected 'relpath pid'"):
        read_msmt17(tmp_path, "train", c)
    (tmp_path / "list_train.txt").write_text("0000/0000_000.jpg 0\n")
    with pytest.raises(DataFormatError, match=r"\[record line 1\]: no camera number in the 3rd '_' field"):
        read_msmt17(tmp_path, "train", c)
    (tmp_path / "list_train.txt").write_text("0000/0000_000_01_a.jpg zero\n")
    with pytest.raises(DataFormatError, match=r"\[record line 1\]: pid 'zero' is not an integer"):
        read_msmt17(tmp_path, "train", c)


def test_cuhk03_round_trip_and_real_mat_layout(tmp_path: Path):
    items = [(IMG, 1, 0, "train"), (IMG, 1, 1, "train"), (IMG, 3, 0, "train"),
             (IMG, 1400, 0, "query"), (IMG, 1400, 1, "gallery"), (IMG, 1401, 1, "gallery")]
    files = write_cuhk03_np(tmp_path, items)
    card = get_dataset_card("cuhk03")
    assert files == {k: dict(card.splits[k].files) for k in ("train", "test")}
    mat = scipy.io.loadmat(tmp_path / "cuhk03_new_protocol_config_labeled.mat")
    assert mat["filelist"].shape == (6, 1) and mat["filelist"][3][0][0] == "1_1400_1_03.png"
    assert mat["train_idx"].shape == (3, 1) and mat["query_idx"][0, 0] == 4  # 1-based, as in the real file
    np.testing.assert_array_equal(mat["camId"].ravel(), [1, 2, 1, 1, 2, 2])
    c = _card("cuhk03", files)
    train = read_cuhk03_np(tmp_path, "train", c)
    assert _triples(train) == [(1, 0, "train"), (1, 1, "train"), (3, 0, "train")]
    assert train.samples[1].image == tmp_path / "images_labeled" / "1_001_2_01.png" and train.samples[1].image.is_file()
    test = read_cuhk03_np(tmp_path, "test", c)
    assert _triples(test) == [(1400, 0, "query"), (1400, 1, "gallery"), (1401, 1, "gallery")]


def test_cuhk03_bad_index_names_field(tmp_path: Path):
    files = write_cuhk03_np(tmp_path, [(IMG, 1, 0, "train"), (IMG, 2, 1, "query")])
    path = tmp_path / "cuhk03_new_protocol_config_labeled.mat"
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    mat["query_idx"] = np.array([[7.0]])
    scipy.io.savemat(path, mat)
    with pytest.raises(DataFormatError, match=r"labeled\.mat \[record query_idx\[0\]\]: index 7 outside \[1, 2\]"):
        read_cuhk03_np(tmp_path, "test", _card("cuhk03", files))
    del mat["camId"]
    scipy.io.savemat(path, mat)
    with pytest.raises(DataFormatError, match=r"no variable 'camId'"):
        read_cuhk03_np(tmp_path, "test", _card("cuhk03", files))
