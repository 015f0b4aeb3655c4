"""Corrupt inputs are errors that name the file (and record) at fault, never a library traceback.

Table-driven over the formats: every ``.mat``-based dataset with an empty and a truncated
annotation file, and an odgt with a repeated image ID.
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
    for key, p in paths.items():
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
