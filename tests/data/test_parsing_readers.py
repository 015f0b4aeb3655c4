"""LIP / CIHP / Human3.6M parsing readers: written-then-read round trips and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.parsing import (
    h36m_label_path,
    read_cihp,
    read_h36m_parsing,
    read_lip,
    write_cihp,
    write_h36m_parsing,
    write_lip,
)
from hcbench.data.transforms.image import load_label, load_rgb, write_label
from hcbench.data.transforms.parsing import load_pair
from hcbench.data.types import DataFormatError, ParsingSample
from hcbench.registry import DATASETS

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "real-samples"
H36M_RAW = [0, 1, 2, 3, 6, 7, 8, 17, 18, 19, 25, 26, 27, 32, 33, 34, 38, 39, 43, 44, 46, 49, 50, 56, 58]


def _items(n: int, num_classes: int, seed: int = 0, values: list[int] | None = None):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = 24 + 4 * i, 16 + 2 * i
        # smooth content so the JPEG round trip stays close to the original
        yy, xx = np.mgrid[0:h, 0:w]
        image = np.stack([yy * 200 // h, xx * 200 // w, np.full((h, w), 40 * i)], -1).astype(np.uint8)
        pool = np.asarray(values if values is not None else range(num_classes), np.uint8)
        label = pool[rng.integers(0, len(pool), (h, w))]
        out.append((image, label, f"{1000 + i}_{7 * i}"))
    return out


def _card(name: str, split: str, files: dict, size: int | None = None):
    card = get_dataset_card(name)
    return card.model_copy(update={"splits": {split: card.splits[next(iter(card.splits))].model_copy(
        update={"files": files, "size": size})}})


@pytest.mark.parametrize("fmt, writer, reader", [("lip", write_lip, read_lip), ("cihp", write_cihp, read_cihp)])
def test_id_layout_round_trip(tmp_path: Path, fmt, writer, reader):
    items = _items(3, 20)
    files = writer(tmp_path, "val", items)
    card = _card(fmt, "val", files, size=3)
    ds = reader(tmp_path, "val", card)
    assert DATASETS.get(fmt) is reader
    assert [s.sample_id for s in ds.samples] == ["1000_0", "1001_7", "1002_14"]
    assert ds.family == "parsing" and ds.meta.num_classes == 20
    assert ds.meta.flip_pairs == ((14, 15), (16, 17), (18, 19))
    assert ds.files == [tmp_path / files["ids"]]
    for (image, label, sid), s in zip(items, ds.samples, strict=True):
        assert s.image == tmp_path / files["images"] / f"{sid}.jpg"
        assert s.label == tmp_path / files["labels"] / f"{sid}.png"
        np.testing.assert_array_equal(load_label(s.label), label)  # lossless PNG
        img, lab = load_pair(s, ds.meta)
        np.testing.assert_array_equal(lab, label)
        assert img.shape == image.shape  # JPEG: pixels only close
        assert np.abs(img.astype(int) - image.astype(int)).mean() < 3
    assert len(reader(tmp_path, "val", card, limit=2)) == 2


def test_lip_layout_matches_datasets_md(tmp_path: Path):
    files = write_lip(tmp_path, "train", _items(1, 20))
    assert files == {"images": "train_images", "labels": "train_segmentations", "ids": "train_id.txt"}
    assert files == dict(get_dataset_card("lip").splits["train"].files)
    assert (tmp_path / "train_id.txt").read_text() == "1000_0\n"
    assert write_cihp(tmp_path, "val", _items(1, 20)) == dict(get_dataset_card("cihp").splits["val"].files)


def test_lip_bad_id_line_names_file_and_line(tmp_path: Path):
    files = write_lip(tmp_path, "val", _items(2, 20))
    (tmp_path / files["ids"]).write_text("1000_0\n1001 7\n")
    with pytest.raises(DataFormatError, match=r"val_id\.txt \[record line 2\]: expected one image id"):
        read_lip(tmp_path, "val", _card("lip", "val", files))
    (tmp_path / files["ids"]).write_text("1000_0\n\n1000_0\n")
    with pytest.raises(DataFormatError, match=r"\[record line 3\]: id '1000_0' repeats line 1"):
        read_lip(tmp_path, "val", _card("lip", "val", files))


def test_label_shape_mismatch_names_label(tmp_path: Path):
    files = write_lip(tmp_path, "val", _items(1, 20))
    card = _card("lip", "val", files)
    s = read_lip(tmp_path, "val", card).samples[0]
    write_label(s.label, np.zeros((5, 5), np.uint8))
    with pytest.raises(DataFormatError, match=r"1000_0\.png \[record 1000_0\]: label is 5x5 \(WxH\) but the image"):
        load_pair(s, card.meta())


def test_h36m_round_trip_remaps_raw_ids(tmp_path: Path):
    values = H36M_RAW + [4, 59]  # raw ids outside the 25 used ones read as ignore (255)
    items = [(img, lab, f"S{9 + i}/Directions.5413896{i}/{i:08d}") for i, (img, lab, _) in
             enumerate(_items(2, 0, values=values))]
    files = write_h36m_parsing(tmp_path, "val", items)
    assert files == {"list": "flist_2hz_eval.txt"}
    assert (tmp_path / "flist_2hz_eval.txt").read_text().splitlines()[0] == \
        "protocol_1/rgb/S9/Directions.54138960/00000000.png"
    card = _card("h36m_parsing", "val", files)
    ds = read_h36m_parsing(tmp_path, "val", card)
    assert ds.meta.num_classes == 25
    assert dict(ds.meta.label_map) == {raw: i for i, raw in enumerate(H36M_RAW)}
    lut = {raw: i for i, raw in enumerate(H36M_RAW)}
    for (image, raw, sid), s in zip(items, ds.samples, strict=True):
        assert s.sample_id == f"protocol_1/rgb/{sid}"
        assert s.label == tmp_path / "protocol_1" / "seg" / f"{sid}.png"
        np.testing.assert_array_equal(load_label(s.label), raw)  # palette PNG keeps raw ids
        img, lab = load_pair(s, ds.meta)
        np.testing.assert_array_equal(img, image)  # PNG images: exact
        expected = np.vectorize(lambda v: lut.get(int(v), 255))(raw)
        np.testing.assert_array_equal(lab, expected)
    assert (lab == 255).any() and lab.max() == 255 and set(np.unique(lab)) <= set(range(25)) | {255}


def test_h36m_label_path_and_errors(tmp_path: Path):
    assert h36m_label_path("protocol_1/rgb/S1/Walking.1/00000005.png") == "protocol_1/seg/S1/Walking.1/00000005.png"
    (tmp_path / "flist_2hz_train.txt").write_text("protocol_1/rgb/S1/a/0.png\nprotocol_1/img/S1/a/1.png\n")
    with pytest.raises(DataFormatError, match=r"flist_2hz_train\.txt \[record line 2\]: .*no 'rgb' folder"):
        read_h36m_parsing(tmp_path, "train", _card("h36m_parsing", "train", {"list": "flist_2hz_train.txt"}))


def test_reader_on_a_real_jpeg(tmp_path: Path):
    """The real sample images are pose photos; the LIP reader + decoder run on one real JPEG file."""
    src = REAL_SAMPLES / "coco" / "000000000785.jpg"
    if not src.is_file():
        pytest.skip(f"real sample images not found at {src.parent}")
    real = load_rgb(src)
    label = np.zeros(real.shape[:2], np.uint8)
    label[10:50, 20:60] = 15
    files = write_lip(tmp_path, "val", [(real, label, "785")])
    shutil.copyfile(src, tmp_path / files["images"] / "785.jpg")  # the real bytes, not a re-encode
    s = read_lip(tmp_path, "val", _card("lip", "val", files)).samples[0]
    img, lab = load_pair(s, get_dataset_card("lip").meta())
    np.testing.assert_array_equal(img, real)
    assert int((lab == 15).sum()) == 40 * 40


def test_samples_are_parsing_samples(tmp_path: Path):
    files = write_cihp(tmp_path, "train", _items(1, 20))
    ds = read_cihp(tmp_path, "train", _card("cihp", "train", files))
    assert isinstance(ds.samples[0], ParsingSample)
    assert ds.samples[0].image.parent == tmp_path / "Training" / "Images"
