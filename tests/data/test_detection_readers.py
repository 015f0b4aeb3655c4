"""CrowdHuman (.odgt) and CityPersons (.mat) readers: round trips, the real layouts, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.detection import (
    read_citypersons,
    read_crowdhuman,
    write_citypersons,
    write_citypersons_mat,
    write_crowdhuman,
    write_odgt,
)
from hcbench.data.types import DataFormatError, DetectionSample

F32 = np.float32


def _card(name: str, split: str, files: dict, **options):
    card = get_dataset_card(name)
    spec = card.splits[split].model_copy(update={"files": files, "size": None})
    return card.model_copy(update={"splits": {split: spec}, "options": {**card.options, **options}})


def _sample(image_id: str, seed: int = 0) -> DetectionSample:
    rng = np.random.default_rng(seed)
    boxes = np.array([[10, 12, 20, 50], [-3, 5, 30.5, 60]], F32)
    visible = np.array([[10, 12, 20, 30], [0, 5, 27.5, 60]], F32)
    heads = np.array([[15, 12, 8, 9], [4, 5, 9, 10]], F32)
    ignore = rng.integers(0, 40, (1, 4)).astype(F32) + np.array([0, 0, 1, 1], F32)
    return DetectionSample(Path(), image_id, boxes, visible, ignore, heads=heads)


def test_crowdhuman_round_trip(tmp_path: Path):
    img = np.zeros((64, 48, 3), np.uint8)
    samples = [_sample("273271,c9db000d5146c15", 0), _sample("273275,4e9d1000623d0ae5", 1)]
    files = write_crowdhuman(tmp_path, "val", [(img, s) for s in samples])
    assert files == dict(get_dataset_card("crowdhuman").splits["val"].files)
    ds = read_crowdhuman(tmp_path, "val", _card("crowdhuman", "val", files))
    assert ds.family == "detection" and ds.files == [tmp_path / "annotation_val.odgt"]
    for want, got in zip(samples, ds.samples, strict=True):
        assert got.image_id == want.image_id
        assert got.image == tmp_path / "Images" / f"{want.image_id}.jpg" and got.image.is_file()
        for key in ("boxes", "visible", "heads", "ignore"):
            np.testing.assert_array_equal(getattr(got, key), getattr(want, key), err_msg=key)
    assert len(read_crowdhuman(tmp_path, "val", _card("crowdhuman", "val", files), limit=1)) == 1


def test_crowdhuman_real_record_layout(tmp_path: Path):
    """A record as in the real odgt: mask tag and extra.ignore=1 are ignore regions; hbox may be absent."""
    rec = {"ID": "284193,faa9000f2678b5e", "gtboxes": [
        {"tag": "person", "hbox": [123, 129, 63, 64], "head_attr": {"ignore": 0, "occ": 1, "unsure": 0},
         "fbox": [61, 123, 191, 453], "vbox": [62, 126, 154, 446], "extra": {"box_id": 0, "occ": 1}},
        {"tag": "mask", "hbox": [404, 214, 52, 73], "head_attr": {}, "fbox": [404, 214, 52, 73],
         "vbox": [404, 214, 52, 73], "extra": {"box_id": 1, "occ": 0, "ignore": 1}},
        {"tag": "person", "fbox": [1, 2, 3, 4], "vbox": [1, 2, 3, 4], "extra": {"box_id": 2, "ignore": 1}},
        {"tag": "person", "fbox": [5, 6, 7, 8], "vbox": [5, 6, 7, 7], "extra": {"box_id": 3, "ignore": 0}}]}
    write_odgt(tmp_path / "annotation_train.odgt", [rec])
    files = {"annotations": "annotation_train.odgt", "images": "Images"}
    s = read_crowdhuman(tmp_path, "train", _card("crowdhuman", "train", files)).samples[0]
    np.testing.assert_array_equal(s.boxes, [[61, 123, 191, 453], [5, 6, 7, 8]])
    np.testing.assert_array_equal(s.visible, [[62, 126, 154, 446], [5, 6, 7, 7]])
    np.testing.assert_array_equal(s.ignore, [[404, 214, 52, 73], [1, 2, 3, 4]])
    np.testing.assert_array_equal(s.heads[0], [123, 129, 63, 64])
    assert np.isnan(s.heads[1]).all()


def test_crowdhuman_errors_name_file_and_line(tmp_path: Path):
    good = json.dumps({"ID": "a", "gtboxes": []})
    path = tmp_path / "annotation_val.odgt"
    files = {"annotations": "annotation_val.odgt", "images": "Images"}
    card = _card("crowdhuman", "val", files)
    lines = [json.dumps({"ID": f"a{i}", "gtboxes": []}) for i in range(6)]  # IDs are unique in a valid odgt
    path.write_text("\n".join(lines + ['{"ID": "b", "gtboxes": [}']) + "\n")
    with pytest.raises(DataFormatError, match=r"annotation_val\.odgt \[record line 7\]: not JSON: "):
        read_crowdhuman(tmp_path, "val", card)
    bad_box = {"ID": "c", "gtboxes": [{"tag": "person", "fbox": [1, 2, 3, 4]},
                                      {"tag": "person", "fbox": [1, 2, 3, 4], "vbox": [1, 2, 3]}]}
    path.write_text(good + "\n" + json.dumps(bad_box) + "\n")
    with pytest.raises(DataFormatError, match=r"\[record line 2\]: gtboxes\[1\]\.vbox has 3 values, expected 4"):
        read_crowdhuman(tmp_path, "val", card)
    path.write_text(json.dumps({"gtboxes": []}) + "\n")
    with pytest.raises(DataFormatError, match=r"\[record line 1\]: missing or empty 'ID'"):
        read_crowdhuman(tmp_path, "val", card)


def _city_sample(name: str) -> DetectionSample:
    boxes = np.array([[100, 200, 40, 100], [300, 210, 35, 90], [500, 220, 80, 120]], F32)
    visible = np.array([[100, 220, 40, 70], [300, 210, 35, 90], [500, 220, 80, 120]], F32)
    ignore = np.array([[0, 0, 64, 32]], F32)
    return DetectionSample(Path(), name, boxes, visible, ignore, labels=np.array([1, 2, 5]))


def test_citypersons_round_trip_and_real_mat_layout(tmp_path: Path):
    img = np.zeros((32, 64, 3), np.uint8)
    names = ["frankfurt_000000_000294_leftImg8bit.png", "munster_000001_000019_leftImg8bit.png"]
    files = write_citypersons(tmp_path, "val", [(img, _city_sample(n)) for n in names])
    assert files == dict(get_dataset_card("citypersons").splits["val"].files)
    # the layout the public readers index: mat['anno_val_aligned'][0][i][0][0] -> (cityname, im_name, bbs)
    mat = scipy.io.loadmat(tmp_path / files["annotations"])
    anno = mat["anno_val_aligned"]
    assert anno.shape == (1, 2) and anno[0][1][0][0][0][0] == "munster" and anno[0][1][0][0][1][0] == names[1]
    assert anno[0][0].dtype.names == ("cityname", "im_name", "bbs")
    np.testing.assert_array_equal(anno[0][0][0][0][2][:, 0], [1, 2, 5, 0])
    ds = read_citypersons(tmp_path, "val", _card("citypersons", "val", files))
    s = ds.samples[1]
    assert s.image == tmp_path / "leftImg8bit" / "val" / "munster" / names[1] and s.image.is_file()
    want = _city_sample(names[1])
    np.testing.assert_array_equal(s.boxes, want.boxes)
    np.testing.assert_array_equal(s.visible, want.visible)
    np.testing.assert_array_equal(s.ignore, want.ignore)
    np.testing.assert_array_equal(s.labels, [1, 2, 5])
    assert (s.width, s.height) == (2048, 1024)  # from the card's options.image_size


def test_citypersons_bad_bbs_names_record(tmp_path: Path):
    write_citypersons_mat(tmp_path / "anno_train.mat", "train", [("aachen", "aachen_0_leftImg8bit.png",
                                                                  np.zeros((0, 10)))])
    files = {"annotations": "anno_train.mat", "images": "leftImg8bit/train"}
    ds = read_citypersons(tmp_path, "train", _card("citypersons", "train", files))
    assert ds.samples[0].boxes.shape == (0, 4) and ds.samples[0].ignore.shape == (0, 4)
    cell = np.empty((1, 1), dtype=object)
    s = np.empty((1, 1), dtype=[("cityname", object), ("im_name", object), ("bbs", object)])
    s[0, 0]["cityname"], s[0, 0]["im_name"], s[0, 0]["bbs"] = "aachen", "aachen_1.png", np.ones((2, 9))
    cell[0, 0] = s
    scipy.io.savemat(tmp_path / "anno_train.mat", {"anno_train_aligned": cell})
    with pytest.raises(DataFormatError, match=r"anno_train\.mat \[record anno_train_aligned\[0\] aachen_1\.png\]: "
                                              r"bbs has shape \(2, 9\), expected N x 10"):
        read_citypersons(tmp_path, "train", _card("citypersons", "train", files))
    scipy.io.savemat(tmp_path / "anno_train.mat", {"something": np.zeros(3)})
    with pytest.raises(DataFormatError, match="expected one 'anno_<split>_aligned' variable"):
        read_citypersons(tmp_path, "train", _card("citypersons", "train", files))
