"""Text-to-image person retrieval readers and writer: CUHK-PEDES, ICFG-PEDES, RSTPReid.

All three publish one JSON list of image records beside an ``imgs/`` folder; they differ in the
file name, the name of the image-path field and the split names a record may carry:

| format | annotation file | path field | splits | ids |
|---|---|---|---|---|
| ``cuhkpedes`` | ``reid_raw.json`` | ``file_path`` | train / val / test | 1-based, 13,003 |
| ``icfgpedes`` | ``ICFG-PEDES.json`` | ``file_path`` | train / test | 4,102 |
| ``rstpreid`` | ``data_captions.json`` | ``img_path`` | train / val / test | 4,101 |

Every record is ``{"id": int, "<path field>": str, "captions": [str, ...], "split": str}``
(CUHK-PEDES and ICFG-PEDES also carry ``processed_tokens``, which is not used: captions are
re-tokenised with the CLIP BPE tokenizer, as IRRA does). One :class:`T2ISample` per image
record, holding all of its captions; the dataset's own ``id`` is kept (the adapter relabels
training ids).

Card file roles (every split): ``annotations`` (the JSON file) and ``images`` (the ``imgs``
folder the paths are relative to). A split reads the records whose ``split`` equals the card's
split name, or ``options.split_values[split]`` when the card maps it (e.g. a card split
``test`` reading the records marked ``test``). ``options.check_images`` (default true): every
image of the split must exist on disk.

Bad records raise :class:`DataFormatError` naming the JSON file and the record (its 0-based
position in the list and its image path): a record that is not an object, an unknown split, a
missing/non-integer id, a missing or empty caption list or an empty caption, a missing image
path, an image missing on disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers._common import require_file, role_paths, take
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.registry import DATASETS


@dataclass
class T2ISample:
    """One image with its captions. ``image_id`` is the record's position in the annotation file."""

    image: Path
    pid: int
    captions: tuple[str, ...]
    image_id: int
    file_path: str  # as written in the annotation file (relative to ``imgs/``)


@dataclass(frozen=True)
class T2IMeta:
    name: str


@dataclass(frozen=True)
class T2IFormat:
    annotation_file: str
    path_key: str
    splits: tuple[str, ...]


FORMATS: dict[str, T2IFormat] = {
    "cuhkpedes": T2IFormat("reid_raw.json", "file_path", ("train", "val", "test")),
    "icfgpedes": T2IFormat("ICFG-PEDES.json", "file_path", ("train", "test")),
    "rstpreid": T2IFormat("data_captions.json", "img_path", ("train", "val", "test")),
}


def load_annotations(path: Path) -> list:
    """The JSON list of a T2I annotation file; a clear error when it is not one."""
    require_file(path, "text-to-image annotation file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text: {e}") from None
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise DataFormatError(path, f"expected a JSON list of image records, got {type(data).__name__}")
    return data


def _record_label(i: int, rec: object, path_key: str) -> str:
    if isinstance(rec, dict) and isinstance(rec.get(path_key), str):
        return f"{i} ({path_key}={rec[path_key]!r})"
    return str(i)


def parse_record(rec: object, i: int, fmt: T2IFormat, path: Path) -> tuple[str, int, str, tuple[str, ...]]:
    """(split, id, image path, captions) of record ``i``; DataFormatError naming file and record."""
    label = _record_label(i, rec, fmt.path_key)
    if not isinstance(rec, dict):
        raise DataFormatError(path, f"expected an object, got {type(rec).__name__}", record=label)
    split = rec.get("split")
    if split not in fmt.splits:
        raise DataFormatError(path, f"unknown split {split!r} (this format has {', '.join(fmt.splits)})",
                              record=label)
    pid = rec.get("id")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise DataFormatError(path, f"'id' must be an integer, got {pid!r}", record=label)
    rel = rec.get(fmt.path_key)
    if not isinstance(rel, str) or not rel.strip():
        raise DataFormatError(path, f"missing image path '{fmt.path_key}'", record=label)
    caps = rec.get("captions")
    if not isinstance(caps, list) or not caps:
        raise DataFormatError(path, "missing caption: 'captions' must be a non-empty list of strings",
                              record=label)
    for k, c in enumerate(caps):
        if not isinstance(c, str) or not c.strip():
            raise DataFormatError(path, f"caption {k} is empty or not a string ({c!r})", record=label)
    return split, pid, rel, tuple(caps)


def split_value(card: DatasetCard, split: str) -> str:
    return str(card.options.get("split_values", {}).get(split, split))


def read_t2i(root: Path, split: str, card: DatasetCard, fmt: T2IFormat, *, limit: int | None = None
             ) -> DatasetSplit:
    p = role_paths(Path(root), card, split, ("annotations", "images"))
    ann = p["annotations"]
    records = load_annotations(ann)
    want = split_value(card, split)
    if want not in fmt.splits:
        raise DataFormatError(ann, f"card {card.name!r} split {split!r} reads records marked {want!r}, "
                              f"which this format does not have ({', '.join(fmt.splits)})")
    check_images = bool(card.options.get("check_images", True))
    samples: list[T2ISample] = []
    for i, rec in enumerate(records):
        s, pid, rel, caps = parse_record(rec, i, fmt, ann)
        if s != want or (limit is not None and len(samples) >= limit):
            continue
        image = p["images"] / rel
        if check_images and not image.is_file():
            raise DataFormatError(ann, f"image missing on disk: {image}", record=_record_label(i, rec, fmt.path_key))
        samples.append(T2ISample(image, pid, caps, i, rel))
    return DatasetSplit(card.name, split, "t2i", take(samples, limit), T2IMeta(card.name),  # type: ignore[arg-type]
                        files=[ann])


@DATASETS.register("cuhkpedes")
def read_cuhkpedes(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    return read_t2i(root, split, card, FORMATS["cuhkpedes"], limit=limit)


@DATASETS.register("icfgpedes")
def read_icfgpedes(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    return read_t2i(root, split, card, FORMATS["icfgpedes"], limit=limit)


@DATASETS.register("rstpreid")
def read_rstpreid(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    return read_t2i(root, split, card, FORMATS["rstpreid"], limit=limit)


# --------------------------------------------------------------------------- counts
def split_counts(samples: Sequence[T2ISample]) -> dict[str, int]:
    """identities / images / captions of a split (what the papers' tables report)."""
    return {"identities": len({s.pid for s in samples}), "images": len(samples),
            "captions": sum(len(s.captions) for s in samples)}


# --------------------------------------------------------------------------- writer
# (image, pid, captions, split, relative path under imgs/)
T2IItem = tuple[np.ndarray, int, Sequence[str], str, str]


def write_t2i(root: Path, items: Iterable[T2IItem], fmt: str = "cuhkpedes") -> dict[str, dict[str, str]]:
    """Write ``imgs/<path>`` and the format's JSON list; returns card ``files`` per split.

    Records are written in item order with the fields the real file has (CUHK-PEDES and
    ICFG-PEDES also get ``processed_tokens``: lower-cased word lists, as the released files hold).
    """
    spec = FORMATS[fmt]
    root = Path(root)
    records, splits = [], []
    for k, (image, pid, captions, split, rel) in enumerate(items):
        if split not in spec.splits:
            raise ValueError(f"item {k}: split {split!r} not in {spec.splits}")
        write_image(root / "imgs" / rel, image)
        rec: dict = {"split": split, "captions": list(captions), spec.path_key: rel, "id": int(pid)}
        if fmt != "rstpreid":
            rec["processed_tokens"] = [c.lower().replace(",", " ").replace(".", " ").split() for c in captions]
        records.append(rec)
        if split not in splits:
            splits.append(split)
    (root / spec.annotation_file).write_text(json.dumps(records, indent=0) + "\n", encoding="utf-8")
    return {s: {"annotations": spec.annotation_file, "images": "imgs"} for s in splits}
