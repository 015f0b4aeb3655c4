"""Pedestrian-detection readers and writers: CrowdHuman (``.odgt``) and CityPersons (``anno_*.mat``).

Card file roles
- ``crowdhuman_odgt``: ``annotations`` (``annotation_{train,val}.odgt``: one JSON object per line,
  ``{"ID", "gtboxes": [{"tag", "fbox", "vbox", "hbox", "extra": {"ignore"}}]}``), ``images``
  (folder of ``<ID>.jpg``). A box tagged ``mask`` (or any tag other than ``person``), or with
  ``extra.ignore == 1``, is an ignore region (its full box).
- ``citypersons_mat``: ``annotations`` (``anno_{split}.mat`` holding ``anno_{split}_aligned``: a 1 x N
  cell of structs ``cityname``, ``im_name``, ``bbs``; ``bbs`` rows are
  ``[class, x1, y1, w, h, instance_id, x1_vis, y1_vis, w_vis, h_vis]``), ``images``
  (``leftImg8bit/{split}`` with ``<city>/<im_name>``). Class 0 rows are ignore regions; classes
  1..5 (pedestrian, rider, sitting, other, group) are boxes with ``labels`` so that each protocol
  decides which count (the Reasonable subset keeps class 1, height >= 50, visibility >= 0.65).

All boxes are ``[x, y, w, h]`` float32 in pixels.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers import _matlab as M
from hcbench.data.readers._common import require_file, role_paths, take
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError, DatasetSplit, DetectionMeta, DetectionSample
from hcbench.registry import DATASETS


def _empty() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def _meta(card: DatasetCard) -> DetectionMeta:
    meta = card.meta()
    assert isinstance(meta, DetectionMeta)
    return meta


# --------------------------------------------------------------------------- CrowdHuman
def _box(obj: dict, key: str, where: str, path: Path, record: str) -> list[float] | None:
    if key not in obj:
        return None
    v = obj[key]
    if not isinstance(v, list) or len(v) != 4:
        n = len(v) if isinstance(v, list) else type(v).__name__
        raise DataFormatError(path, f"{where}.{key} has {n} values, expected 4 [x, y, w, h]", record=record)
    # a string ("12") would convert silently: the format holds numbers, so anything else is an error
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
        raise DataFormatError(path, f"{where}.{key} is not numeric: {v!r}", record=record)
    out = [float(x) for x in v]
    if not all(math.isfinite(x) for x in out):
        raise DataFormatError(path, f"{where}.{key} is not finite: {v!r}", record=record)
    return out


def parse_odgt_record(obj: Any, path: Path, record: str, images: Path) -> DetectionSample:
    """One odgt line (already JSON-decoded) -> DetectionSample, validated."""
    if not isinstance(obj, dict):
        raise DataFormatError(path, f"expected a JSON object, got {type(obj).__name__}", record=record)
    image_id = obj.get("ID")
    if not isinstance(image_id, str) or not image_id:
        raise DataFormatError(path, "missing or empty 'ID'", record=record)
    gtboxes = obj.get("gtboxes", [])
    if not isinstance(gtboxes, list):
        raise DataFormatError(path, "'gtboxes' is not a list", record=record)
    boxes, visible, heads, ignore = [], [], [], []
    for j, gt in enumerate(gtboxes):
        where = f"gtboxes[{j}]"
        if not isinstance(gt, dict):
            raise DataFormatError(path, f"{where} is not an object", record=record)
        fbox = _box(gt, "fbox", where, path, record)
        if fbox is None:
            raise DataFormatError(path, f"{where} has no 'fbox'", record=record)
        vbox = _box(gt, "vbox", where, path, record)
        hbox = _box(gt, "hbox", where, path, record)
        extra = gt.get("extra") or {}
        if not isinstance(extra, dict):
            raise DataFormatError(path, f"{where}.extra is not an object", record=record)
        try:
            flagged = int(extra.get("ignore", 0) or 0) == 1
        except (TypeError, ValueError):
            raise DataFormatError(path, f"{where}.extra.ignore is {extra['ignore']!r}, not 0/1", record=record) from None
        if gt.get("tag") != "person" or flagged:
            ignore.append(fbox)
            continue
        boxes.append(fbox)
        visible.append(vbox if vbox is not None else fbox)
        heads.append(hbox if hbox is not None else [math.nan] * 4)  # NaN row: head box not annotated
    arr = lambda rows: np.asarray(rows, np.float32).reshape(-1, 4)  # noqa: E731
    return DetectionSample(images / f"{image_id}.jpg", image_id, arr(boxes), arr(visible), arr(ignore),
                           heads=arr(heads))


def read_odgt_file(path: Path, images: Path, *, limit: int | None = None) -> list[DetectionSample]:
    """Every record of an ``.odgt`` (one JSON object per line; records named ``line N``), parsed by
    :func:`parse_odgt_record`. A repeated ``ID`` is an error: it would merge two images' boxes."""
    samples: list[DetectionSample] = []
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if limit is not None and len(samples) >= limit:
                break
            if not line.strip():
                continue
            record = f"line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"not JSON: {e}", record=record) from None
            sample = parse_odgt_record(obj, path, record, images)
            if sample.image_id in first_line:
                raise DataFormatError(path, f"duplicate ID {sample.image_id!r} (first on line "
                                      f"{first_line[sample.image_id]})", record=record)
            first_line[sample.image_id] = line_no
            samples.append(sample)
    return samples


@DATASETS.register("crowdhuman_odgt")
def read_crowdhuman(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """CrowdHuman ``annotation_{split}.odgt`` + ``Images/<ID>.jpg``; records named ``line N``."""
    p = role_paths(Path(root), card, split, ("annotations", "images"))
    path = require_file(p["annotations"], f"annotations of split {split!r}")
    samples = read_odgt_file(path, p["images"], limit=limit)
    return DatasetSplit(card.name, split, "detection", samples, _meta(card), files=[path])


def crowdhuman_record(sample: DetectionSample) -> dict:
    """A DetectionSample as one odgt record in the real layout (ignore regions as ``mask`` boxes)."""
    gtboxes = []
    heads = sample.heads if sample.heads is not None else np.full_like(sample.boxes, np.nan)
    for i, (f, v, h) in enumerate(zip(sample.boxes, sample.visible, heads, strict=True)):
        box = {"tag": "person", "fbox": _ints(f), "vbox": _ints(v)}
        if np.isfinite(h).all():
            box["hbox"] = _ints(h)
        box["extra"] = {"box_id": i, "occ": int(not np.array_equal(f, v))}
        gtboxes.append(box)
    for i, g in enumerate(sample.ignore, start=len(gtboxes)):
        gtboxes.append({"tag": "mask", "fbox": _ints(g), "vbox": _ints(g), "hbox": _ints(g),
                        "extra": {"box_id": i, "ignore": 1}})
    return {"ID": sample.image_id, "gtboxes": gtboxes}


def _ints(box: np.ndarray) -> list:
    # CrowdHuman stores integer pixel boxes; keep floats only where the value is fractional
    return [int(x) if float(x).is_integer() else float(x) for x in np.asarray(box, np.float64)]


def write_odgt(path: Path, records: Iterable[dict]) -> Path:
    """Write odgt: one compact JSON object per line."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return path


def write_crowdhuman(root: Path, split: str, items: Sequence[tuple[np.ndarray, DetectionSample]]) -> dict[str, str]:
    """Write ``Images/<ID>.jpg`` and ``annotation_{split}.odgt``; returns the card ``files``.

    Each item is (H x W x 3 uint8 image, DetectionSample); the sample's ``image`` path is ignored.
    """
    root = Path(root)
    for image, sample in items:
        write_image(root / "Images" / f"{sample.image_id}.jpg", image)
    ann = f"annotation_{split}.odgt"
    write_odgt(root / ann, [crowdhuman_record(s) for _, s in items])
    return {"annotations": ann, "images": "Images"}


# --------------------------------------------------------------------------- CityPersons
@DATASETS.register("citypersons_mat")
def read_citypersons(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """CityPersons ``anno_{split}.mat`` + ``leftImg8bit/{split}/<city>/<im_name>``; records named by index."""
    p = role_paths(Path(root), card, split, ("annotations", "images"))
    path = require_file(p["annotations"], f"annotations of split {split!r}")
    mat = M.load_mat(path)
    keys = [k for k in mat if k.startswith("anno_") and k.endswith("_aligned")]
    if len(keys) != 1:
        raise DataFormatError(path, f"expected one 'anno_<split>_aligned' variable, found {keys or 'none'}")
    cells = np.asarray(mat[keys[0]], dtype=object).reshape(-1)
    # every real Cityscapes frame is 2048 x 1024; the card says so in options.image_size ([w, h])
    w, h = (int(v) for v in card.options.get("image_size", (0, 0)))
    samples = []
    for i, cell in enumerate(take(list(cells), limit)):
        record = f"{keys[0]}[{i}]"
        try:
            city = M.to_str(cell[0][0][0])
            im_name = M.to_str(cell[0][0][1])
            bbs = np.asarray(cell[0][0][2], dtype=np.float64)
        except (IndexError, TypeError, ValueError) as e:
            raise DataFormatError(path, f"expected a struct (cityname, im_name, bbs): {e}", record=record) from None
        if bbs.size == 0:
            bbs = bbs.reshape(0, 10)
        if bbs.ndim != 2 or bbs.shape[1] != 10:
            raise DataFormatError(path, f"bbs has shape {bbs.shape}, expected N x 10 "
                                  "[class, x1, y1, w, h, inst, x1v, y1v, wv, hv]", record=f"{record} {im_name}")
        if not np.isfinite(bbs).all():
            raise DataFormatError(path, "bbs holds non-finite values", record=f"{record} {im_name}")
        cls = bbs[:, 0].astype(np.int64)
        if ((cls < 0) | (cls > 5)).any():
            raise DataFormatError(path, f"class labels {sorted(set(cls.tolist()))} outside 0..5",
                                  record=f"{record} {im_name}")
        keep = cls > 0
        samples.append(DetectionSample(
            p["images"] / city / im_name, im_name,
            boxes=bbs[keep, 1:5].astype(np.float32), visible=bbs[keep, 6:10].astype(np.float32),
            ignore=bbs[~keep, 1:5].astype(np.float32), width=w, height=h, labels=cls[keep]))
    return DatasetSplit(card.name, split, "detection", samples, _meta(card), files=[path])


def citypersons_bbs(sample: DetectionSample) -> np.ndarray:
    """A DetectionSample as the N x 10 ``bbs`` matrix (ignore regions as class-0 rows)."""
    n = len(sample.boxes)
    labels = sample.labels if sample.labels is not None else np.ones(n, np.int64)
    triples = zip(labels, sample.boxes, sample.visible, strict=True)
    rows = [[int(c), *b, i + 1, *v] for i, (c, b, v) in enumerate(triples)]
    rows += [[0, *g, 0, *g] for g in sample.ignore]
    return np.asarray(rows, np.float64).reshape(-1, 10)


def write_citypersons_mat(path: Path, split: str, records: Sequence[tuple[str, str, np.ndarray]]) -> Path:
    """Write ``anno_{split}.mat``: ``anno_{split}_aligned`` = 1 x N cell of (cityname, im_name, bbs)."""
    cells = [M.struct(cityname=city, im_name=name, bbs=np.asarray(bbs, np.float64).reshape(-1, 10))
             for city, name, bbs in records]
    return M.save_mat(Path(path), {f"anno_{split}_aligned": M.cell_of(cells, (1, len(cells)))})


def write_citypersons(root: Path, split: str, items: Sequence[tuple[np.ndarray, DetectionSample]]) -> dict[str, str]:
    """Write ``leftImg8bit/{split}/<city>/<image_id>`` (PNG) and ``annotations/anno_{split}.mat``.

    Returns the card ``files`` for the split.

    ``image_id`` is the Cityscapes file name, ``<city>_<seq>_<frame>_leftImg8bit.png``; the city is its
    first ``_`` field. Real frames are 2048 x 1024; smaller synthetic frames are allowed.
    """
    root = Path(root)
    records = []
    for image, sample in items:
        city = sample.image_id.split("_")[0]
        write_image(root / "leftImg8bit" / split / city / sample.image_id, image)
        records.append((city, sample.image_id, citypersons_bbs(sample)))
    ann = f"annotations/anno_{split}.mat"
    write_citypersons_mat(root / ann, split, records)
    return {"annotations": ann, "images": f"leftImg8bit/{split}"}
