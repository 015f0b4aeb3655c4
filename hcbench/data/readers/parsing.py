"""Human-parsing readers and writers: LIP, CIHP (id list + image/label folders) and Human3.6M parsing.

Card file roles
- ``lip`` / ``cihp``: ``images`` (folder of ``<id>.jpg``), ``labels`` (folder of ``<id>.png`` class-id
  maps), ``ids`` (text file, one id per line, no extension).
- ``h36m_parsing``: ``list`` (text file of image paths relative to the dataset root, e.g.
  ``protocol_1/rgb/S1/Directions.54138969/00000000.png``); the label is the same path with the
  ``rgb`` folder replaced by ``seg`` (a palette PNG of raw part ids 0..59, remapped to 25 train ids
  through the card's ``label_map``, exposed as ``ParsingMeta.label_map``).

Readers list samples only; decoding (and the label-shape check) happens in
``hcbench.data.transforms.parsing.load_pair`` and in ``hcbench data check``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers._common import read_lines, require_file, role_paths, take
from hcbench.data.transforms.image import write_image, write_label
from hcbench.data.types import DataFormatError, DatasetSplit, ParsingMeta, ParsingSample
from hcbench.registry import DATASETS

# (image, label, id): an H x W x 3 uint8 image and its H x W uint8 class-id map
ParsingItem = tuple[np.ndarray, np.ndarray, str]

LIP_LAYOUT = {"images": "{split}_images", "labels": "{split}_segmentations", "ids": "{split}_id.txt"}
CIHP_LAYOUT = {"images": "{folder}/Images", "labels": "{folder}/Category_ids", "ids": "{folder}/{split}_id.txt"}
CIHP_FOLDERS = {"train": "Training", "val": "Validation"}
H36M_LISTS = {"train": "flist_2hz_train.txt", "val": "flist_2hz_eval.txt"}


# --------------------------------------------------------------------------- readers
def _read_id_layout(root: Path, split: str, card: DatasetCard, limit: int | None) -> DatasetSplit:
    p = role_paths(root, card, split, ("images", "labels", "ids"))
    ids_file = require_file(p["ids"], f"id list of split {split!r}")
    samples, seen = [], {}
    for line_no, text in read_lines(ids_file):
        sid = text
        if len(text.split()) != 1 or "/" in sid or "\\" in sid:
            raise DataFormatError(ids_file, f"expected one image id per line, got {text!r}", record=f"line {line_no}")
        if sid in seen:
            raise DataFormatError(ids_file, f"id {sid!r} repeats line {seen[sid]}", record=f"line {line_no}")
        seen[sid] = line_no
        samples.append(ParsingSample(p["images"] / f"{sid}.jpg", p["labels"] / f"{sid}.png", sid))
    return DatasetSplit(card.name, split, "parsing", take(samples, limit), _meta(card), files=[ids_file])


@DATASETS.register("lip")
def read_lip(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """LIP: ``{split}_images/<id>.jpg``, ``{split}_segmentations/<id>.png``, ``{split}_id.txt``."""
    return _read_id_layout(Path(root), split, card, limit)


@DATASETS.register("cihp")
def read_cihp(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """CIHP: ``{Training,Validation}/Images/<id>.jpg``, ``.../Category_ids/<id>.png``, ``{split}_id.txt``."""
    return _read_id_layout(Path(root), split, card, limit)


def h36m_label_path(image_rel: str) -> str:
    """The label path of a Human3.6M parsing image: the ``rgb`` folder (last one) becomes ``seg``."""
    parts = list(PurePosixPath(image_rel).parts)
    for i in range(len(parts) - 2, -1, -1):  # never the file name itself
        if parts[i] == "rgb":
            parts[i] = "seg"
            return str(PurePosixPath(*parts))
    raise ValueError(f"path {image_rel!r} has no 'rgb' folder")


@DATASETS.register("h36m_parsing")
def read_h36m_parsing(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """Human3.6M parsing (HCMoCo protocol): a list of ``.../rgb/...`` image paths; labels under ``seg``."""
    root = Path(root)
    list_file = require_file(role_paths(root, card, split, ("list",))["list"], f"image list of split {split!r}")
    samples = []
    for line_no, text in read_lines(list_file):
        rel = text.replace("\\", "/")
        if len(rel.split()) != 1 or rel.startswith("/"):
            raise DataFormatError(list_file, f"expected one relative image path per line, got {text!r}",
                                  record=f"line {line_no}")
        try:
            label_rel = h36m_label_path(rel)
        except ValueError as e:
            raise DataFormatError(list_file, str(e), record=f"line {line_no}") from None
        sid = str(PurePosixPath(rel).with_suffix(""))
        samples.append(ParsingSample(root / rel, root / label_rel, sid))
    return DatasetSplit(card.name, split, "parsing", take(samples, limit), _meta(card), files=[list_file])


def _meta(card: DatasetCard) -> ParsingMeta:
    meta = card.meta()
    assert isinstance(meta, ParsingMeta)
    return meta


# --------------------------------------------------------------------------- writers
def _check_item(item: ParsingItem) -> tuple[np.ndarray, np.ndarray, str]:
    image, label, sid = item
    image, label = np.asarray(image), np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"sample {sid!r}: image {image.shape[:2]} and label {label.shape} differ in size")
    return image, label, str(sid)


def _write_id_layout(root: Path, layout: dict[str, str], samples: Iterable[ParsingItem]) -> dict[str, str]:
    root = Path(root)
    ids = []
    for item in samples:
        image, label, sid = _check_item(item)
        write_image(root / layout["images"] / f"{sid}.jpg", image)
        write_label(root / layout["labels"] / f"{sid}.png", label.astype(np.uint8))
        ids.append(sid)
    ids_path = root / layout["ids"]
    ids_path.parent.mkdir(parents=True, exist_ok=True)
    ids_path.write_text("".join(f"{i}\n" for i in ids))
    return dict(layout)


def write_lip(root: Path, split: str, samples: Iterable[ParsingItem]) -> dict[str, str]:
    """Write a LIP split; returns the card ``files`` (role -> relative path) for it.

    Images are JPEG (as in LIP), so pixel values of a read-back image are only approximately equal;
    labels are lossless single-channel PNGs.
    """
    layout = {k: v.format(split=split) for k, v in LIP_LAYOUT.items()}
    return _write_id_layout(Path(root), layout, samples)


def write_cihp(root: Path, split: str, samples: Iterable[ParsingItem]) -> dict[str, str]:
    """Write a CIHP split (``Training``/``Validation`` folders); returns the card ``files``."""
    folder = CIHP_FOLDERS.get(split, split.capitalize())
    layout = {k: v.format(split=split, folder=folder) for k, v in CIHP_LAYOUT.items()}
    return _write_id_layout(Path(root), layout, samples)


def write_h36m_parsing(root: Path, split: str, samples: Iterable[ParsingItem],
                       list_name: str | None = None) -> dict[str, str]:
    """Write a Human3.6M parsing split; labels hold RAW part ids (0..59), as the real files do.

    Each sample id is ``<subject>/<action>/<frame>`` (e.g. ``S1/Directions.54138969/00000000``); the
    image goes to ``protocol_1/rgb/<id>.png``, the palette label to ``protocol_1/seg/<id>.png``.
    """
    root = Path(root)
    lines = []
    for item in samples:
        image, label, sid = _check_item(item)
        if len(PurePosixPath(sid).parts) != 3:
            raise ValueError(f"sample id {sid!r}: expected '<subject>/<action>/<frame>'")
        rel = f"protocol_1/rgb/{sid}.png"
        write_image(root / rel, image)
        write_label(root / h36m_label_path(rel), label.astype(np.uint8), palette=True)
        lines.append(rel)
    name = list_name or H36M_LISTS.get(split, f"flist_2hz_{split}.txt")
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).write_text("".join(f"{r}\n" for r in lines))
    return {"list": name}
