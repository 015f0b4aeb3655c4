"""PETA-zs / RAP-zs split files: the restricted unpickler, the release's EasyDict layout, the JSON
conversion, the reader and `data check` on small files written in the real format."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from hcbench.cli import main
from hcbench.data.cards import get_dataset_card
from hcbench.data.check import check_dataset
from hcbench.data.readers.par_pickle import (
    UnsafePickleError,
    convert_to_json,
    load_description,
    read_par,
    safe_load_pickle,
    write_par_pickle,
)
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError


class _Payload:
    """Unpickling this would create ``path``: the kind of object a split file must never hold."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _easydict_class():
    """A stand-in for ``easydict.EasyDict`` that pickles under that module name, as the release's
    files do (the real package is not a dependency)."""
    mod = types.ModuleType("easydict")

    class EasyDict(dict):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            for key, v in self.items():
                setattr(self, key, v)

        def __setattr__(self, key, value):
            super().__setattr__(key, value)
            self[key] = value

    EasyDict.__module__ = "easydict"
    EasyDict.__qualname__ = "EasyDict"
    mod.EasyDict = EasyDict
    return mod, EasyDict


def _release_pickle(path: Path, names, labels, attrs, eval_idx, partition, protocol: int = 4) -> Path:
    """A dataset_zs_run0.pkl in the release's layout: EasyDict, numpy arrays, label_idx with a range."""
    mod, ED = _easydict_class()
    sys.modules["easydict"] = mod
    try:
        d = ED()
        d.description = "peta"
        d.reorder = "group_order"
        d.root = "/data/PETA/images"
        d.image_name = list(names)
        d.label = np.asarray(labels, np.int64)
        d.attr_name = list(attrs)
        d.label_idx = ED()
        d.label_idx.eval = list(eval_idx)
        d.label_idx.extra = range(len(eval_idx), len(attrs))
        d.partition = ED()
        for k, v in partition.items():
            setattr(d.partition, k, np.asarray(v))
        d.weight_train = [np.mean(d.label, axis=0).astype(np.float32)]
        path.write_bytes(pickle.dumps(d, protocol=protocol))
    finally:
        del sys.modules["easydict"]
    return path


def test_code_needing_pickle_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned"
    bad = tmp_path / "dataset_zs_run0.pkl"
    doc = {"image_name": ["00001.png"], "label": np.zeros((1, 2), np.uint8), "attr_name": ["a", "b"],
           "partition": {"train": np.array([0]), "hook": _Payload(target)}}
    bad.write_bytes(pickle.dumps(doc, protocol=4))
    with pytest.raises(UnsafePickleError, match=r"dataset_zs_run0\.pkl.*needs pathlib\.(Path|PosixPath)\.touch|"
                                                r"dataset_zs_run0\.pkl.*needs pathlib"):
        safe_load_pickle(bad)
    assert not target.exists()
    # os.system through the reader, the converter and `hcbench data convert`: refused the same way
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(target).encode() + b"'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"os\.system"):
        load_description(evil)
    assert main(["data", "convert", "par-pickle", str(evil), "--out", str(tmp_path / "x.json")]) == 2
    assert not target.exists() and not (tmp_path / "x.json").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_release_layout_reads_through_the_safe_unpickler(tmp_path, protocol):
    attrs = ["a0", "a1", "a2", "a3", "x4"]
    labels = np.array([[1, 0, 2, 1, 1], [0, 1, 0, 0, 0], [1, 1, 1, 0, 2], [0, 0, 0, 1, 1]])
    path = _release_pickle(tmp_path / "s.pkl", [f"{i:05d}.png" for i in range(1, 5)], labels, attrs,
                           eval_idx=[3, 0, 1, 2], partition={"train": [0, 1], "val": [2], "test": [3],
                                                             "trainval": [0, 1, 2]}, protocol=protocol)
    doc = load_description(path)
    assert isinstance(doc["label"], np.ndarray) and doc["label"].shape == (4, 5)
    assert list(doc["label_idx"]["eval"]) == [3, 0, 1, 2] and list(doc["label_idx"]["extra"]) == [4]
    js = convert_to_json(path, tmp_path / "s.json")
    again = load_description(js)
    assert again["label"] == labels.tolist() and again["partition"]["trainval"] == [0, 1, 2]


def _write_zs(root: Path, card_name: str, n_per_split=(3, 2, 2), json_form: bool = False) -> Path:
    """A small copy of a zs dataset in the real layout: split file + images (eval columns shuffled
    in the file, as the release's group order does, plus one non-evaluated column)."""
    card = get_dataset_card(card_name)
    attrs = list(card.attributes) + ["notEvaluated"]
    order = list(range(len(attrs)))
    rng = np.random.default_rng(0)
    rng.shuffle(order)  # file column order
    file_attrs = [attrs[i] for i in order]
    n = sum(n_per_split)
    labels_eval = rng.integers(0, 2, (n, len(card.attributes)))
    labels = np.zeros((n, len(attrs)), np.int64)
    for col, a in enumerate(file_attrs):
        labels[:, col] = labels_eval[:, attrs.index(a)] if a in card.attributes else 2
    eval_idx = [file_attrs.index(a) for a in card.attributes]
    names = [f"{i + 1:05d}.png" for i in range(n)]
    img_dir = root / card.split("test").files["images"]
    for name in names:
        write_image(img_dir / name, rng.integers(0, 255, (16, 8, 3), dtype=np.uint8))
    a, b, c = n_per_split
    part = {"train": list(range(a)), "val": list(range(a, a + b)), "test": list(range(a + b, n))}
    fname = card.split("test").files["annotation"]
    if json_form:
        write_par_pickle(root / "tmp.json", names, labels, file_attrs, part, eval_idx)
        (root / "tmp.json").rename(root / fname)  # the card names the .pkl; JSON is read by suffix
        return root / fname
    _release_pickle(root / fname, names, labels, file_attrs, eval_idx, {**part, "trainval": part["train"] + part["val"]})
    return labels_eval


@pytest.mark.parametrize("card_name", ["peta_zs", "rapzs"])
def test_reader_and_data_check_on_the_real_format(tmp_path, card_name):
    labels_eval = _write_zs(tmp_path, card_name)
    card = get_dataset_card(card_name)
    test = read_par(tmp_path, "test", card)
    assert len(test) == 2 and [s.image.name for s in test.samples] == ["00006.png", "00007.png"]
    np.testing.assert_array_equal(np.stack([s.labels for s in test.samples]), labels_eval[5:7])
    assert len(read_par(tmp_path, "trainval", card)) == 5
    rep = check_dataset(card_name, tmp_path)
    assert rep.ok, rep.problems
    assert rep.summary["train"]["records"] == 3


def test_wrong_attribute_order_and_bad_rows_are_named(tmp_path):
    card = get_dataset_card("peta_zs")
    names = ["00001.png", "00002.png"]
    attrs = list(reversed(card.attributes))
    path = tmp_path / "dataset_zs_run0.pkl"
    write_par_pickle(path, names, np.zeros((2, 35)), attrs, {"train": [0], "val": [1], "test": [1]})
    with pytest.raises(DataFormatError, match="attribute 0 is 'personalMale' in the file but 'accessoryHat'"):
        read_par(tmp_path, "train", card)
    write_par_pickle(path, names, np.zeros((2, 35)), card.attributes, {"train": [0, 7], "val": [1], "test": [1]})
    with pytest.raises(DataFormatError, match=r"partition\.train.*row 7 outside 0\.\.1"):
        read_par(tmp_path, "train", card)


def test_converted_json_reads_the_same(tmp_path):
    pkl_root, json_root = tmp_path / "p", tmp_path / "j"
    _write_zs(pkl_root, "rapzs")
    pkl = pkl_root / "dataset_zs_run0.pkl"
    assert main(["data", "convert", "par-pickle", str(pkl), "--out", str(tmp_path / "conv.json")]) == 0
    card = get_dataset_card("rapzs")
    json_root.mkdir()
    # a card variant naming the JSON file: same samples, same labels
    jcard = card.model_copy(update={"splits": {k: v.model_copy(update={"files": {**v.files, "annotation": "conv.json"}})
                                               for k, v in card.splits.items()}})
    (tmp_path / "RAP_dataset").symlink_to(pkl_root / "RAP_dataset", target_is_directory=True)
    a, b = read_par(pkl_root, "test", card), read_par(tmp_path, "test", jcard)
    assert [s.image.name for s in a.samples] == [s.image.name for s in b.samples]
    np.testing.assert_array_equal(np.stack([s.labels for s in a.samples]), np.stack([s.labels for s in b.samples]))
