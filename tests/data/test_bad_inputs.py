"""Corrupt inputs are errors that name the file (and record) at fault, never a library traceback.

Table-driven over the formats: every ``.mat``-based dataset with an empty and a truncated
annotation file, an odgt with a repeated image ID, a corrupt training image (also when a
DataLoader worker decodes it), a bad tier override or metric in a card, and empty score inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.types import DataFormatError

MAT_DATASETS = [  # (dataset, split, the card's key of the .mat file)
    ("cuhk03", "test", "config"),
    ("citypersons", "val", "annotations"),
    ("peta", "test", "annotation"),
    ("rapv2", "test", "annotation"),
    ("pa100k", "test", "annotation"),
]


def _layout(root: Path, dataset: str, split: str) -> dict[str, Path]:
    files = get_dataset_card(dataset).splits[split].files
    paths = {k: root / v for k, v in files.items()}
    for p in paths.values():
        if not p.suffix:  # image folders must exist so the reader reaches the annotation file
            p.mkdir(parents=True, exist_ok=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
    return paths


def _valid_mat_bytes(tmp: Path) -> bytes:
    scipy.io.savemat(str(tmp), {"x": np.arange(4096, dtype=np.float64)})
    return tmp.read_bytes()


@pytest.mark.parametrize("dataset,split,key", MAT_DATASETS)
@pytest.mark.parametrize("damage", ["empty", "truncated-half", "truncated-header", "not-a-mat"])
def test_corrupt_mat_names_the_file(tmp_path: Path, dataset: str, split: str, key: str, damage: str):
    paths = _layout(tmp_path / "root", dataset, split)
    blob = _valid_mat_bytes(tmp_path / "ok.mat")
    content = {"empty": b"", "truncated-half": blob[: len(blob) // 2], "truncated-header": blob[:100],
               "not-a-mat": b"this is a text file\n"}[damage]
    paths[key].write_bytes(content)
    with pytest.raises(DataFormatError) as err:
        read_split(dataset, split, root=tmp_path / "root")
    assert str(paths[key]) in str(err.value)


def test_odgt_duplicate_id_names_both_lines(tmp_path: Path):
    paths = _layout(tmp_path, "crowdhuman", "val")
    rec = {"ID": "273271,c9db000d5146c15", "gtboxes": [{"tag": "person", "fbox": [1, 2, 30, 60]}]}
    other = {"ID": "273275,4e9d1000623d0ae5", "gtboxes": []}
    paths["annotations"].write_text("\n".join(json.dumps(r) for r in (rec, other, rec)) + "\n")
    with pytest.raises(DataFormatError) as err:
        read_split("crowdhuman", "val", root=tmp_path)
    msg = str(err.value)
    assert str(paths["annotations"]) in msg and "line 3" in msg and "first on line 1" in msg


# --------------------------------------------------------------------------- training images
def _jpeg_bytes(tmp: Path) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)).save(tmp, quality=90)
    return tmp.read_bytes()


def _loaders():
    from hcbench.data.transforms.image import load_label, load_rgb
    from hcbench.data.transforms.pose import open_rgb

    return {"load_rgb": load_rgb, "pose.open_rgb": open_rgb, "load_label": load_label}


class _OneImage:
    """The smallest map-style dataset: item 0 decodes ``path`` (as every adapter's dataset does)."""

    def __init__(self, path: Path, loader: str):
        self.path, self.loader = path, loader

    def __len__(self) -> int:
        return 1

    def __getitem__(self, i: int):
        return np.asarray(_loaders()[self.loader](self.path)).shape


@pytest.mark.parametrize("loader", ["load_rgb", "pose.open_rgb", "load_label"])
@pytest.mark.parametrize("damage", ["empty", "truncated-half", "text"])
def test_corrupt_training_image_names_the_file(tmp_path: Path, loader: str, damage: str):
    blob = _jpeg_bytes(tmp_path / "ok.jpg")
    bad = tmp_path / "images" / "000123.jpg"
    bad.parent.mkdir()
    bad.write_bytes({"empty": b"", "truncated-half": blob[: len(blob) // 2], "text": b"not an image\n"}[damage])
    with pytest.raises(DataFormatError) as err:
        _loaders()[loader](bad)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("loader", ["load_rgb", "pose.open_rgb"])
def test_corrupt_image_in_a_dataloader_worker_is_one_line_naming_the_file(tmp_path: Path, loader: str):
    """torch re-raises a worker's error with the worker traceback as its text; the type stays a
    DataFormatError and the CLI / the runner's FAILED line show only the message naming the file."""
    torch = pytest.importorskip("torch")
    from hcbench.cli import _is_user_error, _message

    bad = tmp_path / "000123.jpg"
    bad.write_bytes(_jpeg_bytes(tmp_path / "ok.jpg")[:300])
    loader_ = torch.utils.data.DataLoader(_OneImage(bad, loader), num_workers=1, batch_size=None)
    with pytest.raises(DataFormatError) as err:
        next(iter(loader_))
    assert _is_user_error(err.value)
    line = _message(err.value)
    assert "\n" not in line and line.startswith(f"{bad}: ") and "Traceback" not in line


# --------------------------------------------------------------------------- protocol cards
CARD_DAMAGE = [  # (what, a function editing the card's YAML mapping, text the error must hold)
    ("tier override of the wrong type", lambda d: d["tiers"].update(smoke={"epochs": "eight"}), "tiers.smoke.epochs"),
    ("tier override out of range", lambda d: d["tiers"].update(smoke={"batch_size": 0}), "tiers.smoke.batch_size"),
    ("a metric the family does not report", lambda d: d["eval"].update(metrics=["PCK", "mIoU"]), "'mIoU'"),
]


@pytest.mark.parametrize("what,damage,expect", CARD_DAMAGE, ids=[c[0] for c in CARD_DAMAGE])
def test_bad_card_fails_at_load_naming_file_and_field(tmp_path: Path, what, damage, expect):
    import yaml

    from hcbench.cards import CardError, load_card_file, tasks_dir

    data = yaml.safe_load((tasks_dir() / "synth_pose.yaml").read_text())
    damage(data)
    path = tmp_path / "synth_pose.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CardError) as err:
        load_card_file(path)
    assert str(path) in str(err.value) and expect in str(err.value)


# --------------------------------------------------------------------------- empty score inputs
EMPTY_SCORE = [  # (family, files to create: name -> bytes, CLI args, the file the error must name)
    ("pose-empty-gt", {"gt.json": b"", "pred.json": b"[]"}, ["pose", "--gt", "gt.json", "--pred", "pred.json"], "gt.json"),
    ("pose-empty-pred", {"gt.json": None, "pred.json": b""}, ["pose", "--gt", "gt.json", "--pred", "pred.json"],
     "pred.json"),
    ("detection-empty-gt", {"gt.odgt": b"", "pred.json": b"[]"}, ["detection", "--gt", "gt.odgt", "--pred", "pred.json"],
     "gt.odgt"),
    ("detection-empty-pred", {"gt.odgt": b'{"ID": "a", "gtboxes": []}\n', "pred.json": b"", "sizes.json": b'{"a": [9, 9]}'},
     ["detection", "--gt", "gt.odgt", "--pred", "pred.json", "--sizes", "sizes.json"], "pred.json"),
    ("reid-empty-pred", {"pred.npz": b""}, ["reid", "--pred", "pred.npz"], "pred.npz"),
    ("attributes-empty-gt", {"gt.npy": b"", "pred.npy": b""}, ["attributes", "--gt", "gt.npy", "--pred", "pred.npy"],
     "gt.npy"),
]
_POSE_GT = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.jpg"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                             "iscrowd": 0, "num_keypoints": 1, "keypoints": [20, 20, 2] + [0, 0, 0] * 16}],
            "categories": [{"id": 1, "name": "person", "keypoints": [str(i) for i in range(17)]}]}


@pytest.mark.parametrize("case,files,args,culprit", EMPTY_SCORE, ids=[c[0] for c in EMPTY_SCORE])
def test_empty_score_inputs_are_one_line_errors(tmp_path: Path, monkeypatch, capsys, case, files, args, culprit):
    from hcbench.cli import main

    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).write_bytes(json.dumps(_POSE_GT).encode() if content is None else content)
    assert main(["score", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hcbench: error: ") and culprit in err and "Traceback" not in err


def test_score_detection_names_a_repeated_odgt_id(tmp_path: Path, capsys):
    """`hcbench score detection` reads the odgt through the reader's parser: same error, one line."""
    from hcbench.cli import main

    rec = {"ID": "273271,c9db000d5146c15", "gtboxes": [{"tag": "person", "fbox": [1, 2, 30, 60]}]}
    gt = tmp_path / "annotation_val.odgt"
    gt.write_text("\n".join(json.dumps(r) for r in (rec, rec)) + "\n")
    pred = tmp_path / "dets.json"
    pred.write_text(json.dumps([{"image_id": rec["ID"], "category_id": 1, "bbox": [1, 2, 30, 60], "score": 0.9}]))
    sizes = tmp_path / "sizes.json"
    sizes.write_text(json.dumps({rec["ID"]: [100, 100]}))
    code = main(["score", "detection", "--gt", str(gt), "--pred", str(pred), "--sizes", str(sizes)])
    err = capsys.readouterr().err
    assert code == 2 and str(gt) in err and "line 2" in err and "duplicate ID" in err and "Traceback" not in err
