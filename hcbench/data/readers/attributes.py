"""Pedestrian-attribute readers and writers: PA-100K, PETA and RAPv2 (MATLAB annotation files).

The card's ``attributes`` list is the protocol (which columns are evaluated, in which order); each
reader checks that the file names those columns identically, so a wrong file or a shifted column
fails loudly instead of training on the wrong label. Splits are ``train``, ``val``, ``test`` and
``trainval`` (train + val). Labels come back as uint8 in {0, 1}.

Card file roles: ``annotation`` (the .mat file) and ``images`` (the image folder).
- ``pa100k_mat``: ``annotation.mat`` with ``{train,val,test}_images_name`` (N x 1 cells),
  ``{train,val,test}_label`` (N x 26) and ``attributes`` (26 x 1 cell); images ``data/<name>``.
- ``peta_mat``: ``PETA.mat`` holding struct ``peta`` whose fields are, by position (as the public
  readers index them): 0 data (19000 x (4 + 105), labels from column 4), 1 attribute names (105 x 1),
  2 selected attributes, 3 partitions (5 x 1 cell of structs train/val/test index, 1-based columns).
  The 35 evaluated attributes are the first 35. Images ``images/{row+1:05d}.png``.
  ``options.partition`` picks one of the 5 random partitions (default 0).
- ``rapv2_mat``: ``RAP_annotation.mat`` holding struct ``RAP_annotation`` with fields ``name``
  (N x 1 cell), ``attribute`` (152 x 1 cell), ``data`` (N x 152), ``selected_attribute`` (1 x 54,
  1-based) and ``partition_attribute`` (1 x 5 cell of structs ``train_index``, ``val_index``,
  ``test_index``, 1-based rows). Label value 2 (uncertain) reads as 0, as the public reader does.
  Images ``RAP_dataset/<name>``; ``options.partition`` as for PETA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers import _matlab as M
from hcbench.data.readers._common import require_file, role_paths
from hcbench.data.transforms.image import write_image
from hcbench.data.types import AttributeMeta, AttributeSample, DataFormatError, DatasetSplit
from hcbench.registry import DATASETS

PART_FIELDS = ("train_index", "val_index", "test_index")
SPLIT_PARTS = {"train": ("train",), "val": ("val",), "test": ("test",), "trainval": ("train", "val")}


def _meta(card: DatasetCard) -> AttributeMeta:
    meta = card.meta()
    assert isinstance(meta, AttributeMeta)
    return meta


def _parts(split: str, path: Path) -> tuple[str, ...]:
    if split not in SPLIT_PARTS:
        raise DataFormatError(path, f"no split {split!r} in this format; use one of {sorted(SPLIT_PARTS)}")
    return SPLIT_PARTS[split]


def check_names(file_names: Sequence[str], card: DatasetCard, path: Path) -> None:
    want = list(card.attributes or [])
    if len(file_names) != len(want):
        raise DataFormatError(path, f"attribute count mismatch: the file defines {len(file_names)} "
                              f"evaluated attributes, the card {card.name!r} lists {len(want)}")
    for i, (a, b) in enumerate(zip(file_names, want, strict=True)):
        if a != b:
            raise DataFormatError(path, f"attribute {i} is {a!r} in the file but {b!r} in the card {card.name!r}")


def check_labels(labels: np.ndarray, n: int, a: int, path: Path, what: str, allow_uncertain: bool = False
                 ) -> np.ndarray:
    """Validate an N x A label matrix; returns uint8 {0, 1} (2 -> 0 when ``allow_uncertain``)."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape != (n, a):
        raise DataFormatError(path, f"{what} has shape {labels.shape}, expected ({n}, {a}) "
                              f"({n} images x {a} attributes)")
    ok = (0, 1, 2) if allow_uncertain else (0, 1)
    bad = ~np.isin(labels, ok)
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataFormatError(path, f"label {labels[r, c].item()!r} at column {c}; expected one of {ok}",
                              record=f"{what} row {r}")
    out = labels.astype(np.uint8)
    out[out == 2] = 0
    return out


def _samples(images: Path, names: Sequence[str], labels: np.ndarray, rows: np.ndarray,
             limit: int | None) -> list[AttributeSample]:
    rows = rows if limit is None else rows[: max(0, limit)]
    return [AttributeSample(images / names[i], labels[i].copy()) for i in rows]


# --------------------------------------------------------------------------- PA-100K
@DATASETS.register("pa100k_mat")
def read_pa100k(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    p = role_paths(Path(root), card, split, ("annotation", "images"))
    path = require_file(p["annotation"], f"annotation of split {split!r}")
    mat = M.load_mat(path)
    attrs = M.cell_strings(M.get_field(mat, "attributes", path), path, "attributes")
    check_names(attrs, card, path)
    names: list[str] = []
    labels = []
    for part in _parts(split, path):
        n = M.cell_strings(M.get_field(mat, f"{part}_images_name", path), path, f"{part}_images_name")
        labels.append(check_labels(M.get_field(mat, f"{part}_label", path), len(n), len(attrs), path,
                                   f"{part}_label"))
        names += n
    lab = np.concatenate(labels, axis=0)
    samples = _samples(p["images"], names, lab, np.arange(len(names)), limit)
    return DatasetSplit(card.name, split, "attributes", samples, _meta(card), files=[path])


def write_pa100k_mat(root: Path, names: Sequence[str], labels: np.ndarray, attributes: Sequence[str],
                     splits: Mapping[str, Sequence[int]], images: Sequence[np.ndarray] | None = None
                     ) -> dict[str, dict[str, str]]:
    """Write ``annotation.mat`` (and ``data/<name>`` when ``images`` are given); returns card ``files``.

    ``names``/``labels``/``images`` cover all images; ``splits`` maps train/val/test to row indices.
    """
    root = Path(root)
    labels = np.asarray(labels, np.uint8).reshape(len(names), len(attributes))
    var: dict[str, Any] = {"attributes": M.cell_column(attributes)}
    for part in ("train", "val", "test"):
        rows = np.asarray(splits.get(part, []), np.int64)
        var[f"{part}_images_name"] = M.cell_column([names[i] for i in rows])
        var[f"{part}_label"] = labels[rows].reshape(len(rows), len(attributes))
    M.save_mat(root / "annotation.mat", var)
    if images is not None:
        for name, image in zip(names, images, strict=True):
            write_image(root / "data" / name, image)
    files = {"annotation": "annotation.mat", "images": "data"}
    return {s: dict(files) for s in splits}


# --------------------------------------------------------------------------- PETA
def _partition_rows(part: Any, parts: tuple[str, ...], n: int, path: Path, what: str, by_name: bool
                    ) -> np.ndarray:
    rows = []
    for name in parts:
        field = PART_FIELDS[("train", "val", "test").index(name)]
        try:
            vec = part[field][0][0] if by_name else part[0][0][("train", "val", "test").index(name)]
        except (IndexError, KeyError, ValueError, TypeError):
            raise DataFormatError(path, f"{what} has no {field}") from None
        rows.append(M.index_vector(vec, n, path, f"{what}.{field}"))
    return np.concatenate(rows)


def _partition(cell: Any, card: DatasetCard, path: Path) -> tuple[Any, str]:
    k = int(card.options.get("partition", 0))
    flat = np.asarray(cell, dtype=object).reshape(-1)
    if not 0 <= k < len(flat):
        raise DataFormatError(path, f"partition {k} requested (options.partition) but the file has {len(flat)}")
    return flat[k], f"partition[{k}]"


@DATASETS.register("peta_mat")
def read_peta(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    p = role_paths(Path(root), card, split, ("annotation", "images"))
    path = require_file(p["annotation"], f"annotation of split {split!r}")
    peta = M.get_field(M.load_mat(path), "peta", path)
    data = np.asarray(M.struct_field(peta, 0, "data", path))
    all_names = M.cell_strings(M.struct_field(peta, 1, "attribute", path), path, "attribute")
    if data.ndim != 2 or data.shape[1] != 4 + len(all_names):
        raise DataFormatError(path, f"data has shape {data.shape}, expected (N, 4 + {len(all_names)}) "
                              "(4 bookkeeping columns, then one per attribute)")
    a = len(card.attributes or [])
    if a > len(all_names):
        raise DataFormatError(path, f"attribute count mismatch: the file has {len(all_names)} attributes, "
                              f"the card {card.name!r} evaluates {a}")
    check_names(all_names[:a], card, path)
    labels = check_labels(data[:, 4:4 + a], len(data), a, path, "data")
    part, what = _partition(M.struct_field(peta, 3, "partition", path), card, path)
    rows = _partition_rows(part, _parts(split, path), len(data), path, what, by_name=False)
    names = [f"{i + 1:05d}.png" for i in range(len(data))]
    samples = _samples(p["images"], names, labels, rows, limit)
    return DatasetSplit(card.name, split, "attributes", samples, _meta(card), files=[path])


def _partition_struct(part: Mapping[str, Sequence[int]], as_column: bool) -> np.ndarray:
    vec = M.column if as_column else M.row
    return M.struct(**{f: vec(np.asarray(part.get(f.split("_")[0], []), np.int64) + 1) for f in PART_FIELDS})


def write_peta_mat(root: Path, labels: np.ndarray, attributes: Sequence[str],
                   partitions: Sequence[Mapping[str, Sequence[int]]], images: Sequence[np.ndarray] | None = None
                   ) -> dict[str, dict[str, str]]:
    """Write ``PETA.mat`` (and ``images/{i+1:05d}.png``); returns card ``files`` per split.

    ``labels`` is N x A over ``attributes`` (real PETA: A = 105, the evaluated 35 first);
    ``partitions`` are dicts train/val/test -> 0-based rows (real PETA has 5).
    """
    root = Path(root)
    labels = np.asarray(labels, np.float64).reshape(-1, len(attributes))
    n = len(labels)
    book = np.zeros((n, 4))
    book[:, 0] = np.arange(1, n + 1)  # the real file's leading bookkeeping columns; readers skip them
    parts = M.cell_of([_partition_struct(pt, as_column=True) for pt in partitions], (len(partitions), 1))
    peta = M.struct(data=np.concatenate([book, labels], axis=1), attribute=M.cell_column(attributes),
                    selected_attribute=M.column(np.arange(1, len(attributes) + 1)), partition_attribute=parts)
    M.save_mat(root / "PETA.mat", {"peta": peta})
    if images is not None:
        if len(images) != n:
            raise ValueError(f"{len(images)} images for {n} label rows")
        for i, image in enumerate(images):
            write_image(root / "images" / f"{i + 1:05d}.png", image)
    files = {"annotation": "PETA.mat", "images": "images"}
    return {s: dict(files) for s in ("train", "val", "test", "trainval")}


# --------------------------------------------------------------------------- RAPv2
def _rap_field(rap: np.ndarray, name: str, path: Path) -> Any:
    try:
        return rap[name][0][0]
    except (ValueError, IndexError, KeyError):
        have = list(rap.dtype.names or ())
        raise DataFormatError(path, f"RAP_annotation has no field {name!r}; fields: {have}") from None


@DATASETS.register("rapv2_mat")
def read_rapv2(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    p = role_paths(Path(root), card, split, ("annotation", "images"))
    path = require_file(p["annotation"], f"annotation of split {split!r}")
    rap = M.get_field(M.load_mat(path), "RAP_annotation", path)
    names = M.cell_strings(_rap_field(rap, "name", path), path, "name")
    all_attrs = M.cell_strings(_rap_field(rap, "attribute", path), path, "attribute")
    data = np.asarray(_rap_field(rap, "data", path))
    if data.ndim != 2 or data.shape != (len(names), len(all_attrs)):
        raise DataFormatError(path, f"data has shape {data.shape}, expected ({len(names)}, {len(all_attrs)}) "
                              "(images x attributes)")
    sel = M.index_vector(_rap_field(rap, "selected_attribute", path), len(all_attrs), path, "selected_attribute")
    check_names([all_attrs[i] for i in sel], card, path)
    labels = check_labels(data[:, sel], len(names), len(sel), path, "data", allow_uncertain=True)
    part, what = _partition(_rap_field(rap, "partition_attribute", path), card, path)
    rows = _partition_rows(part, _parts(split, path), len(names), path, what, by_name=True)
    samples = _samples(p["images"], names, labels, rows, limit)
    return DatasetSplit(card.name, split, "attributes", samples, _meta(card), files=[path])


def write_rapv2_mat(root: Path, names: Sequence[str], labels: np.ndarray, attributes: Sequence[str],
                    selected: Sequence[int], partitions: Sequence[Mapping[str, Sequence[int]]],
                    images: Sequence[np.ndarray] | None = None) -> dict[str, dict[str, str]]:
    """Write ``RAP_annotation.mat`` (and ``RAP_dataset/<name>``); returns card ``files`` per split.

    ``labels`` is N x A over all ``attributes`` (real RAPv2: 152); ``selected`` are the 0-based
    evaluated columns (real: 54); ``partitions`` as for :func:`write_peta_mat`.
    """
    root = Path(root)
    labels = np.asarray(labels, np.float64).reshape(len(names), len(attributes))
    parts = M.cell_of([_partition_struct(pt, as_column=False) for pt in partitions], (1, len(partitions)))
    rap = M.struct(name=M.cell_column(names), attribute=M.cell_column(attributes), data=labels,
                   selected_attribute=M.row(np.asarray(selected, np.int64) + 1), partition_attribute=parts)
    M.save_mat(root / "RAP_annotation.mat", {"RAP_annotation": rap})
    if images is not None:
        for name, image in zip(names, images, strict=True):
            write_image(root / "RAP_dataset" / name, image)
    files = {"annotation": "RAP_annotation.mat", "images": "RAP_dataset"}
    return {s: dict(files) for s in ("train", "val", "test", "trainval")}
