"""PA-100K, PETA and RAPv2 readers: round trips, the .mat layouts the public readers index, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.attributes import (
    read_pa100k,
    read_peta,
    read_rapv2,
    write_pa100k_mat,
    write_peta_mat,
    write_rapv2_mat,
)
from hcbench.data.types import DataFormatError

IMG = np.full((12, 6, 3), 90, np.uint8)


def _card(name: str, files: dict, **options):
    card = get_dataset_card(name)
    specs = {k: v.model_copy(update={"files": files[k], "size": None}) for k, v in card.splits.items() if k in files}
    return card.model_copy(update={"splits": specs, "options": {**card.options, **options}})


def _labels(n: int, a: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2, (n, a)).astype(np.uint8)


# --------------------------------------------------------------------------- PA-100K
def test_pa100k_round_trip(tmp_path: Path):
    attrs = get_dataset_card("pa100k").attributes
    assert len(attrs) == 26 and attrs[0] == "Female" and attrs[-1] == "boots"
    names = [f"{i:06d}.jpg" for i in range(1, 8)]
    labels = _labels(7, 26)
    splits = {"train": [0, 1, 2, 3], "val": [4, 5], "test": [6]}
    files = write_pa100k_mat(tmp_path, names, labels, attrs, splits, images=[IMG] * 7)
    # the layout the public readers index: mat['train_images_name'][i][0][0], mat['attributes'][i][0][0]
    mat = scipy.io.loadmat(tmp_path / "annotation.mat")
    assert mat["train_images_name"].shape == (4, 1) and mat["train_images_name"][3][0][0] == "000004.jpg"
    assert mat["attributes"][25][0][0] == "boots" and mat["val_label"].shape == (2, 26)
    card = _card("pa100k", {**files, "trainval": files["train"]})
    for split, rows in [*splits.items(), ("trainval", [0, 1, 2, 3, 4, 5])]:
        ds = read_pa100k(tmp_path, split, card)
        assert [s.image.name for s in ds.samples] == [names[i] for i in rows]
        np.testing.assert_array_equal(np.stack([s.labels for s in ds.samples]), labels[rows])
        assert ds.samples[0].labels.dtype == np.uint8 and ds.meta.num_attributes == 26
    assert ds.samples[0].image == tmp_path / "data" / "000001.jpg" and ds.samples[0].image.is_file()
    assert len(read_pa100k(tmp_path, "train", card, limit=3)) == 3


def test_pa100k_mismatches(tmp_path: Path):
    attrs = get_dataset_card("pa100k").attributes
    files = write_pa100k_mat(tmp_path, ["a.jpg"], _labels(1, 25), attrs[:25], {"train": [0]})
    with pytest.raises(DataFormatError, match=r"annotation\.mat: attribute count mismatch: the file defines 25"):
        read_pa100k(tmp_path, "train", _card("pa100k", files))
    swapped = [attrs[1], attrs[0], *attrs[2:]]
    write_pa100k_mat(tmp_path, ["a.jpg"], _labels(1, 26), swapped, {"train": [0]})
    with pytest.raises(DataFormatError, match=r"attribute 0 is 'AgeOver60' in the file but 'Female' in the card"):
        read_pa100k(tmp_path, "train", _card("pa100k", files))
    bad = _labels(2, 26)
    bad[1, 4] = 3
    write_pa100k_mat(tmp_path, ["a.jpg", "b.jpg"], bad, attrs, {"train": [0, 1]})
    with pytest.raises(DataFormatError, match=r"\[record train_label row 1\]: label 3 at column 4"):
        read_pa100k(tmp_path, "train", _card("pa100k", files))


def test_pa100k_label_shape_mismatch(tmp_path: Path):
    attrs = get_dataset_card("pa100k").attributes
    files = write_pa100k_mat(tmp_path, ["a.jpg", "b.jpg"], _labels(2, 26), attrs, {"train": [0, 1]})
    mat = {k: v for k, v in scipy.io.loadmat(tmp_path / "annotation.mat").items() if not k.startswith("__")}
    mat["train_label"] = mat["train_label"][:1]
    scipy.io.savemat(tmp_path / "annotation.mat", mat)
    with pytest.raises(DataFormatError, match=r"train_label has shape \(1, 26\), expected \(2, 26\)"):
        read_pa100k(tmp_path, "train", _card("pa100k", files))


# --------------------------------------------------------------------------- PETA
def _peta(tmp_path: Path, n: int = 10):
    attrs = list(get_dataset_card("peta").attributes) + ["upperBodyBlack", "hairBlack", "personalFemale"]
    labels = _labels(n, len(attrs), seed=1)
    rng = np.random.default_rng(2)
    partitions = []
    for _ in range(5):
        perm = rng.permutation(n)
        partitions.append({"train": perm[:5].tolist(), "val": perm[5:7].tolist(), "test": perm[7:].tolist()})
    files = write_peta_mat(tmp_path, labels, attrs, partitions, images=[IMG] * n)
    return files, labels, partitions


def test_peta_round_trip(tmp_path: Path):
    files, labels, partitions = _peta(tmp_path)
    # the layout the public readers index positionally
    peta = scipy.io.loadmat(tmp_path / "PETA.mat")["peta"]
    assert peta[0][0][0].shape == (10, 4 + 38)
    assert peta[0][0][1][16][0][0] == "personalMale"
    np.testing.assert_array_equal(peta[0][0][3][2][0][0][0][0][:, 0] - 1, partitions[2]["train"])
    np.testing.assert_array_equal(peta[0][0][3][2][0][0][0][2][:, 0] - 1, partitions[2]["test"])
    for k in (0, 3):
        card = _card("peta", files, partition=k)
        for split in ("train", "val", "test"):
            ds = read_peta(tmp_path, split, card)
            rows = partitions[k][split]
            assert [s.image.name for s in ds.samples] == [f"{i + 1:05d}.png" for i in rows]
            np.testing.assert_array_equal(np.stack([s.labels for s in ds.samples]), labels[rows, :35])
        tv = read_peta(tmp_path, "trainval", card)
        assert len(tv) == 7 and tv.samples[5].image.name == f"{partitions[k]['val'][0] + 1:05d}.png"
    assert ds.samples[0].image.is_file() and ds.meta.num_attributes == 35


def test_peta_errors(tmp_path: Path):
    files, _, _ = _peta(tmp_path)
    with pytest.raises(DataFormatError, match=r"PETA\.mat: partition 5 requested \(options\.partition\) but the file has 5"):
        read_peta(tmp_path, "train", _card("peta", files, partition=5))
    attrs = list(get_dataset_card("peta").attributes)
    write_peta_mat(tmp_path, _labels(3, 20), attrs[:20], [{"train": [0], "val": [1], "test": [2]}])
    with pytest.raises(DataFormatError, match=r"attribute count mismatch: the file has 20 attributes"):
        read_peta(tmp_path, "train", _card("peta", files))


# --------------------------------------------------------------------------- RAPv2
def test_rapv2_round_trip(tmp_path: Path):
    selected_names = list(get_dataset_card("rapv2").attributes)
    assert len(selected_names) == 54
    # 60 raw attributes with the 54 evaluated ones scattered (as in the 152-column file)
    extra = [f"ub-Color{i}" for i in range(6)]
    attrs = selected_names[:10] + extra[:3] + selected_names[10:40] + extra[3:] + selected_names[40:]
    selected = [attrs.index(a) for a in selected_names]
    n = 9
    labels = np.random.default_rng(3).integers(0, 3, (n, len(attrs)))  # 2 = uncertain
    names = [f"CAM{i % 3:02d}_2014-02-15_{i:08d}.png" for i in range(n)]
    partitions = [{"train": [0, 1, 2, 3, 4], "val": [5, 6], "test": [7, 8]},
                  {"train": [8, 7, 6, 5, 4], "val": [3, 2], "test": [1, 0]}]
    files = write_rapv2_mat(tmp_path, names, labels, attrs, selected, partitions, images=[IMG] * n)
    rap = scipy.io.loadmat(tmp_path / "RAP_annotation.mat")["RAP_annotation"]
    assert rap["name"][0][0][4][0][0] == names[4] and rap["data"][0][0].shape == (n, 60)
    assert rap["attribute"][0][0][0][0][0] == "Femal"
    np.testing.assert_array_equal(rap["selected_attribute"][0][0][0] - 1, selected)
    np.testing.assert_array_equal(rap["partition_attribute"][0][0][0][1]["train_index"][0][0][0] - 1, [8, 7, 6, 5, 4])
    expected = labels[:, selected].copy()
    expected[expected == 2] = 0
    for k in (0, 1):
        card = _card("rapv2", files, partition=k)
        for split in ("train", "val", "test"):
            ds = read_rapv2(tmp_path, split, card)
            rows = partitions[k][split]
            assert [s.image for s in ds.samples] == [tmp_path / "RAP_dataset" / names[i] for i in rows]
            np.testing.assert_array_equal(np.stack([s.labels for s in ds.samples]), expected[rows])
    assert set(np.unique(expected)) == {0, 1} and ds.meta.num_attributes == 54


def test_rapv2_errors(tmp_path: Path):
    names54 = list(get_dataset_card("rapv2").attributes)
    files = write_rapv2_mat(tmp_path, ["a.png"], np.zeros((1, 54)), names54, list(range(53)),
                            [{"train": [0], "val": [], "test": []}])
    with pytest.raises(DataFormatError, match=r"RAP_annotation\.mat: attribute count mismatch: the file defines 53"):
        read_rapv2(tmp_path, "train", _card("rapv2", files))
    write_rapv2_mat(tmp_path, ["a.png"], np.zeros((1, 54)), names54, list(range(54)),
                    [{"train": [3], "val": [], "test": []}])
    with pytest.raises(DataFormatError, match=r"\[record partition\[0\]\.train_index\[0\]\]: index 4 outside \[1, 1\]"):
        read_rapv2(tmp_path, "train", _card("rapv2", files))
