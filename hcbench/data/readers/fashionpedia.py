"""Fashionpedia (``instances_attributes_{train,val}2020.json``): apparel instance masks with attributes.

The file is COCO instance-segmentation JSON with one more list and one more annotation field:

- ``images``: ``{id, file_name, width, height, ...}`` (extra keys such as ``license``,
  ``original_url``, ``kaggle_id`` are kept in the file and ignored here);
- ``categories``: ``{id, name, supercategory, level, taxonomy_id}`` -- 46 apparel categories with
  ids 0..45 (27 main garments and accessories, 19 garment parts);
- ``attributes``: ``{id, name, supercategory, level, taxonomy_id}`` -- 294 fine-grained attributes
  (ids are not contiguous); their position in this list is the attribute's index in a
  multi-hot vector, as in the official API;
- ``annotations``: ``{id, image_id, category_id, attribute_ids: [int], segmentation, bbox,
  area, iscrowd}``; ``segmentation`` is a polygon list ``[[x1, y1, x2, y2, ...], ...]`` or an
  RLE ``{"size": [h, w], "counts": str | [int]}``.

Card roles (``format: fashionpedia``): ``annotations`` (the JSON) and ``images`` (the folder
``file_name`` is relative to). Card checks: ``classes`` (the category names in id order),
``options.category_ids`` (default 0..C-1) and ``options.num_attributes`` must match the file;
``options.attribute_categories`` lists the category ids scored with the attribute-F1 constraint.

Every record is validated when read; a bad one raises :class:`DataFormatError` naming the file
and ``annotation id=N`` (or ``image id=N``, ``category #i``, ``attribute #i``). One sample is one
image with all its annotations; ``limit`` keeps the first N images of the file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers._common import require_file, role_paths
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.registry import DATASETS

FORMAT = "fashionpedia"


@dataclass
class FashionAnnotation:
    ann_id: int
    category_id: int
    attribute_ids: tuple[int, ...]
    segmentation: Any  # polygons [[x, y, ...], ...] or RLE {"size", "counts"}, as in the file
    bbox: tuple[float, float, float, float]  # [x, y, w, h]
    area: float
    iscrowd: int = 0


@dataclass
class FashionSample:
    """One image and its apparel instances."""

    image: Path
    image_id: int
    width: int
    height: int
    annotations: list[FashionAnnotation] = field(default_factory=list)


@dataclass(frozen=True)
class FashionMeta:
    name: str
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    attribute_ids: tuple[int, ...]  # file order = multi-hot index
    attribute_names: tuple[str, ...]
    attribute_categories: tuple[int, ...] = ()  # category ids scored with the F1 constraint

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def num_attributes(self) -> int:
        return len(self.attribute_ids)

    def attribute_index(self) -> dict[int, int]:
        return {a: i for i, a in enumerate(self.attribute_ids)}

    def label_of(self) -> dict[int, int]:
        """Category id -> contiguous training label 1..C (0 is the detector's background)."""
        return {c: i + 1 for i, c in enumerate(self.category_ids)}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class FashionpediaIndex:
    """A validated Fashionpedia annotation file (see the module docstring for the schema)."""

    def __init__(self, doc: Any, path: str | Path):
        self.path = Path(path)
        if not isinstance(doc, dict):
            raise self._err(f"expected a JSON object with 'images', 'annotations', 'categories' and 'attributes', "
                            f"got {type(doc).__name__}")
        for key in ("images", "annotations", "categories", "attributes"):
            if not isinstance(doc.get(key), list):
                raise self._err(f"'{key}' is missing or not a list (a Fashionpedia file has images, annotations, "
                                "categories and attributes)")
        self.categories = self._named(doc["categories"], "category")
        self.attributes = self._named(doc["attributes"], "attribute")
        self.attribute_ids = set(self.attributes)
        self.images: dict[int, dict] = {}
        for i, img in enumerate(doc["images"]):
            self._check_image(img, i)
            self.images[img["id"]] = img
        self.by_image: dict[int, list[FashionAnnotation]] = {iid: [] for iid in self.images}
        seen: set[int] = set()
        for i, ann in enumerate(doc["annotations"]):
            a = self._annotation(ann, i)
            if a.ann_id in seen:
                raise self._err(f"duplicate annotation id {a.ann_id}", f"annotation id={a.ann_id}")
            seen.add(a.ann_id)
            self.by_image[ann["image_id"]].append(a)
        self.doc = doc

    def _err(self, msg: str, record: str | None = None) -> DataFormatError:
        return DataFormatError(self.path, msg, record=record)

    def _named(self, entries: list, kind: str) -> dict[int, str]:
        out: dict[int, str] = {}
        for i, e in enumerate(entries):
            rec = f"{kind} #{i}"
            if not isinstance(e, dict) or not _is_int(e.get("id")) or not isinstance(e.get("name"), str):
                raise self._err(f"{kind} entry needs an integer 'id' and a string 'name', got {e!r}"[:300], rec)
            if e["id"] in out:
                raise self._err(f"duplicate {kind} id {e['id']}", rec)
            out[e["id"]] = e["name"]
        return out

    def _check_image(self, img: Any, i: int) -> None:
        rec = f"image #{i}" + (f" id={img.get('id')}" if isinstance(img, dict) else "")
        if not isinstance(img, dict):
            raise self._err("image entry is not an object", rec)
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise self._err(f"image entry has no '{key}'", rec)
        if not _is_int(img["id"]):
            raise self._err(f"image id {img['id']!r} is not an integer", rec)
        if img["id"] in self.images:
            raise self._err(f"duplicate image id {img['id']}", rec)
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise self._err(f"file_name {img['file_name']!r} is not a file name", rec)
        if not all(_is_int(img[k]) and img[k] > 0 for k in ("width", "height")):
            raise self._err(f"image size {img['width']!r}x{img['height']!r} is not two positive integers", rec)

    def _annotation(self, ann: Any, i: int) -> FashionAnnotation:
        if not isinstance(ann, dict):
            raise self._err("annotation is not an object", f"annotation #{i}")
        if not _is_int(ann.get("id")):
            raise self._err(f"annotation has no integer 'id' (got {ann.get('id')!r})", f"annotation #{i}")
        rec = f"annotation id={ann['id']}"
        img = self.images.get(ann.get("image_id"))  # type: ignore[arg-type]
        if img is None:
            raise self._err(f"image_id {ann.get('image_id')!r} has no entry in 'images'", rec)
        cat = ann.get("category_id")
        if not _is_int(cat) or cat not in self.categories:
            raise self._err(f"category_id {cat!r} is not one of the file's {len(self.categories)} categories", rec)
        atts = ann.get("attribute_ids", [])
        if not isinstance(atts, list) or not all(_is_int(a) for a in atts):
            raise self._err(f"attribute_ids must be a list of integers, got {atts!r}"[:300], rec)
        unknown = [a for a in atts if a not in self.attribute_ids]
        if unknown:
            raise self._err(f"attribute_ids {unknown} are not in the file's 'attributes'", rec)
        seg = ann.get("segmentation")
        self._check_segmentation(seg, img, rec)
        box = ann.get("bbox")
        if box is None:
            box = _bbox_of(seg, img["height"], img["width"])
        elif not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)) or box[2] < 0 or box[3] < 0:
            raise self._err(f"bbox {box!r} is not 4 finite numbers [x, y, w, h] with w, h >= 0", rec)
        area = ann.get("area")
        if area is None:
            area = _area_of(seg, img["height"], img["width"])
        elif not _is_num(area) or area < 0:
            raise self._err(f"area {area!r} is not a finite number >= 0", rec)
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, bool):
            raise self._err(f"iscrowd {crowd!r} is not 0 or 1", rec)
        return FashionAnnotation(int(ann["id"]), int(cat), tuple(int(a) for a in atts), seg,
                                 tuple(float(v) for v in box), float(area), int(crowd))  # type: ignore[arg-type]

    def _check_segmentation(self, seg: Any, img: dict, rec: str) -> None:
        if isinstance(seg, list):
            if not seg:
                raise self._err("segmentation is an empty polygon list", rec)
            for j, poly in enumerate(seg):
                if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                    n = len(poly) if isinstance(poly, list) else type(poly).__name__
                    raise self._err(f"segmentation polygon {j} has {n} values; a polygon is >= 3 points "
                                    "[x1, y1, x2, y2, ...]", rec)
                if not all(_is_num(v) for v in poly):
                    bad = next(v for v in poly if not _is_num(v))
                    raise self._err(f"segmentation polygon {j} contains {bad!r}, not a finite number", rec)
            return
        if isinstance(seg, dict):
            size, counts = seg.get("size"), seg.get("counts")
            if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
                raise self._err(f"RLE segmentation 'size' must be [height, width], got {size!r}", rec)
            if list(size) != [img["height"], img["width"]]:
                raise self._err(f"RLE size {size} differs from the image's [height, width] "
                                f"[{img['height']}, {img['width']}]", rec)
            if isinstance(counts, list):
                if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != size[0] * size[1]:
                    raise self._err("uncompressed RLE counts must be non-negative integers summing to "
                                    "height x width", rec)
            elif not isinstance(counts, str):
                raise self._err(f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}",
                                rec)
            return
        raise self._err(f"segmentation must be a polygon list or an RLE object, got {type(seg).__name__}", rec)

    # -- samples ------------------------------------------------------------------------------
    def samples(self, image_dir: Path, limit: int | None = None) -> list[FashionSample]:
        out = []
        for iid, img in self.images.items():
            if limit is not None and len(out) >= limit:
                break
            out.append(FashionSample(image_dir / img["file_name"], iid, int(img["width"]), int(img["height"]),
                                     list(self.by_image[iid])))
        return out


# --------------------------------------------------------------------------- masks
def _rle(seg: Any, h: int, w: int) -> dict:
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    if isinstance(seg.get("counts"), list):
        return mask_utils.frPyObjects(seg, h, w)
    return {"size": list(seg["size"]), "counts": seg["counts"].encode()}


def decode_mask(seg: Any, height: int, width: int) -> np.ndarray:
    """A segmentation (polygons or RLE) -> (H, W) uint8 mask in {0, 1}."""
    from pycocotools import mask as mask_utils

    return np.ascontiguousarray(mask_utils.decode(_rle(seg, height, width)), dtype=np.uint8)


def encode_mask(mask: np.ndarray) -> dict:
    """(H, W) binary mask -> compressed RLE with a JSON-able (str) ``counts``."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _bbox_of(seg: Any, h: int, w: int) -> list[float]:
    from pycocotools import mask as mask_utils

    return [float(v) for v in mask_utils.toBbox(_rle(seg, h, w))]


def _area_of(seg: Any, h: int, w: int) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area(_rle(seg, h, w)))


# --------------------------------------------------------------------------- reader
def load_annotations(path: str | Path) -> Any:
    path = Path(path)
    require_file(path, "Fashionpedia annotations")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"not a JSON file ({e})") from None


def meta_of(card: DatasetCard) -> FashionMeta:
    """The card's view of the dataset (names come from the file when it is read)."""
    names = tuple(card.classes or ())
    ids = tuple(int(c) for c in card.options.get("category_ids", range(len(names))))
    return FashionMeta(card.name, ids, names, (), (),
                       tuple(int(c) for c in card.options.get("attribute_categories", ())))


def _check_against_card(index: FashionpediaIndex, card: DatasetCard) -> None:
    cat_ids = sorted(index.categories)
    names = [index.categories[c] for c in cat_ids]
    if card.classes is not None and list(card.classes) != names:
        diff = next((i for i, (a, b) in enumerate(zip(card.classes, names, strict=False)) if a != b), None)
        where = f"first difference at position {diff}: card {card.classes[diff]!r} vs file {names[diff]!r}" \
            if diff is not None else f"card lists {len(card.classes)}, the file {len(names)}"
        raise DataFormatError(index.path, f"categories do not match dataset card {card.name!r} ({where})")
    ids = card.options.get("category_ids")
    if ids is not None and [int(c) for c in ids] != cat_ids:
        raise DataFormatError(index.path, f"category ids {cat_ids} differ from dataset card {card.name!r}'s "
                                          f"options.category_ids {list(ids)}")
    want = card.options.get("num_attributes")
    if want is not None and int(want) != len(index.attributes):
        raise DataFormatError(index.path, f"{len(index.attributes)} attributes, but dataset card {card.name!r} "
                                          f"says num_attributes: {want}")


@DATASETS.register(FORMAT)
def read_fashionpedia(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    """Fashionpedia annotations + images of one split -> one :class:`FashionSample` per image.

    ``extra``: ``gt`` (the parsed file, for evaluation), ``image_ids`` (the images the samples
    cover, in order).
    """
    p = role_paths(Path(root), card, split, ("annotations", "images"))
    path = p["annotations"]
    index = FashionpediaIndex(load_annotations(path), path)
    _check_against_card(index, card)
    cat_ids = tuple(sorted(index.categories))
    meta = FashionMeta(card.name, cat_ids, tuple(index.categories[c] for c in cat_ids),
                       tuple(index.attributes), tuple(index.attributes.values()),
                       tuple(int(c) for c in card.options.get("attribute_categories", ())))
    samples = index.samples(p["images"], limit)
    return DatasetSplit(card.name, split, card.family, samples, meta, files=[path],
                        extra={"gt": index.doc, "image_ids": [s.image_id for s in samples]})


def ground_truth(split: DatasetSplit) -> dict:
    """The split's ground truth as the metric takes it, restricted to the split's images."""
    doc = split.extra["gt"]
    keep = set(split.extra["image_ids"])
    return {"images": [i for i in doc["images"] if i["id"] in keep],
            "annotations": [a for a in doc["annotations"] if a["image_id"] in keep],
            "categories": doc["categories"], "attributes": doc["attributes"]}


# --------------------------------------------------------------------------- writer
def write_fashionpedia(path: Path, images: Sequence[dict], annotations: Sequence[dict], categories: Sequence[dict],
                       attributes: Sequence[dict], info: dict | None = None) -> Path:
    """Write an annotation file in the Fashionpedia layout (compact JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"info": info or {}, "images": list(images), "annotations": list(annotations),
           "categories": list(categories), "attributes": list(attributes), "licenses": []}
    path.write_text(json.dumps(doc, separators=(",", ":")), encoding="utf-8")
    return path
