"""COCO-style keypoint files: COCO-2017, AI Challenger, CrowdPose, OCHuman, MHP, Human-Art,
AP-10K, ChimpACT (COCO-WholeBody's part lists: :mod:`hcbench.data.readers.wholebody`).

Every category that lists keypoint names is read (people: one; AP-10K: one per species, all
with the same 17 names); with several, each instance carries its ``category_id`` in ``extra``
so that predictions name it and COCOeval scores per category, as the dataset's evaluation does.

Card roles (``datasets/<name>.yaml``, ``format: coco_keypoints``):

- ``annotations``: the keypoint json (``images``, ``annotations``, ``categories``);
- ``images``: the image folder that ``file_name`` is relative to;
- ``detections`` (optional): person detections ``[{image_id, bbox, score, category_id}]``
  (e.g. ``COCO_val2017_detections_AP_H_56_person.json``).

Training/evaluation instances follow mmpose's top-down rules: crowd annotations,
annotations without a labelled keypoint and boxes that vanish when clipped to the image are
skipped; they stay in the ground-truth file, which evaluation reads
(``DatasetSplit.extra["coco_gt"]``). Boxes are clipped to ``[0, W-1] x [0, H-1]``; a
missing ``area`` (AIC) becomes ``0.53 x box area`` like mmpose.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard, DatasetCardError
from hcbench.data.types import DataFormatError, DatasetSplit, KeypointMeta, PoseInstance
from hcbench.registry import DATASETS

PERSON_CATEGORY_ID = 1


def load_json(path: str | Path) -> Any:
    """Parse a json file; a missing file or one that is not JSON raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(path, f"not a JSON file ({e})") from None


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class CocoKeypointIndex:
    """A validated COCO keypoint file: image entries by id (file order) and their annotations.

    Every record is checked once here so that readers, ``hcbench data check`` and the
    synthetic writer report the same errors: keypoint count ``== 3 K``, four finite box
    numbers, an image entry for every annotation, the category's keypoint list of length K.
    Keypoints of all person annotations are held in one ``(N, K, 3)`` array (``keypoints``),
    boxes in ``(N, 4)`` (``boxes``), so that a 260k-annotation file reads in seconds.
    """

    def __init__(self, doc: Any, path: str | Path, num_keypoints: int):
        self.path = Path(path)
        self.num_keypoints = k = num_keypoints
        if not isinstance(doc, dict) or not isinstance(doc.get("images"), list) or not isinstance(
                doc.get("annotations"), list):
            got = f"an object with keys {sorted(doc)[:8]}" if isinstance(doc, dict) else type(doc).__name__
            raise DataFormatError(self.path, f"expected a COCO keypoint object with 'images' and 'annotations' "
                                             f"lists, got {got}")
        self.category_ids = self._check_categories(doc.get("categories", []), k)
        self.category_id = self.category_ids[0]
        self.images: dict[int, dict] = {}
        for i, img in enumerate(doc["images"]):
            self._check_image(img, i)
            self.images[img["id"]] = img
        for i, ann in enumerate(doc["annotations"]):
            self._check_annotation(ann, i)
        self._check_values(doc["annotations"])
        self.annotations: list[dict] = [a for a in doc["annotations"]
                                        if a.get("category_id", self.category_id) in self.category_ids]
        n = len(self.annotations)
        self.keypoints = np.array([a["keypoints"] for a in self.annotations], dtype=np.float32).reshape(n, k, 3)
        self.boxes = np.array([a["bbox"] for a in self.annotations], dtype=np.float64).reshape(n, 4)
        self.rows_by_image: dict[int, list[int]] = {iid: [] for iid in self.images}
        for row, ann in enumerate(self.annotations):
            self.rows_by_image[ann["image_id"]].append(row)

    def _err(self, msg: str, record: str | None = None) -> DataFormatError:
        return DataFormatError(self.path, msg, record=record)

    def _check_categories(self, cats: Any, k: int) -> tuple[int, ...]:
        """Ids of the categories that list keypoint names (people: one; AP-10K: one per species)."""
        if not isinstance(cats, list):
            raise self._err("'categories' must be a list")
        ids = []
        for c in cats:
            if isinstance(c, dict) and "keypoints" in c:
                n = len(c["keypoints"])
                if n != k:
                    raise self._err(f"category {c.get('name', c.get('id'))!r} lists {n} keypoint names for a "
                                    f"{k}-keypoint dataset", record=f"category id={c.get('id')}")
                ids.append(int(c.get("id", PERSON_CATEGORY_ID)))
        return tuple(ids) or (PERSON_CATEGORY_ID,)

    def _check_image(self, img: Any, i: int) -> None:
        rec = f"image #{i}" + (f" id={img.get('id')}" if isinstance(img, dict) else "")
        if not isinstance(img, dict):
            raise self._err("image entry is not an object", record=rec)
        for key in ("id", "file_name", "width", "height"):
            if key not in img:
                raise self._err(f"image entry has no '{key}'", record=rec)
        if not isinstance(img["id"], int) or isinstance(img["id"], bool):
            raise self._err(f"image id {img['id']!r} is not an integer", record=rec)
        if img["id"] in self.images:
            raise self._err(f"duplicate image id {img['id']}", record=rec)
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise self._err(f"file_name {img['file_name']!r} is not a file name", record=rec)
        if not all(_is_num(img[s]) and img[s] > 0 for s in ("width", "height")):
            raise self._err(f"image size {img['width']!r}x{img['height']!r} is not positive", record=rec)

    @staticmethod
    def _record(ann: dict, i: int) -> str:
        return f"annotation id={ann['id']}" if "id" in ann else f"annotation #{i}"

    def _check_annotation(self, ann: Any, i: int) -> None:
        """Structure of one record; the numbers themselves are checked for all at once."""
        if not isinstance(ann, dict):
            raise self._err("annotation is not an object", record=f"annotation #{i}")
        kp, box, k = ann.get("keypoints"), ann.get("bbox"), self.num_keypoints
        if ("id" in ann and ann.get("image_id") in self.images and isinstance(kp, list) and len(kp) == 3 * k
                and isinstance(box, list) and len(box) == 4):
            return  # the common case, without building a record label
        rec = self._record(ann, i)
        if "id" not in ann:
            raise self._err("annotation has no 'id'", record=rec)
        if ann.get("image_id") not in self.images:
            raise self._err(f"image_id {ann.get('image_id')!r} has no entry in 'images'", record=rec)
        if not isinstance(kp, list):
            raise self._err(f"'keypoints' is {type(kp).__name__}, not a list", record=rec)
        if len(kp) != 3 * k:
            raise self._err(f"{len(kp)} values for a {k}-keypoint dataset (keypoints needs {3 * k}: x, y, v "
                            f"per keypoint)", record=rec)
        raise self._err(f"bbox {box!r} is not 4 finite numbers [x, y, w, h]", record=rec)

    def _check_values(self, anns: list[dict]) -> None:
        """Every keypoint and box value a finite number, boxes not negative: vectorised, with a
        per-record pass only to name the first culprit."""
        if not anns:
            return
        for key in ("keypoints", "bbox"):
            try:
                # no dtype first: a string number ("12") would convert silently; with one, numpy gives a str array
                arr = np.array([a[key] for a in anns])
                if arr.dtype.kind not in "fiu" or arr.ndim != 2:
                    raise TypeError(f"{key} values are not all numbers")
                arr = arr.astype(np.float64)
                ok = np.isfinite(arr).all(axis=1)
                if key == "bbox":
                    ok &= (arr[:, 2] >= 0) & (arr[:, 3] >= 0)
                bad = np.flatnonzero(~ok)
            except (TypeError, ValueError):  # a string or nested list somewhere
                bad = np.array([i for i, a in enumerate(anns) if not all(_is_num(v) for v in a[key])])
            if len(bad):
                i = int(bad[0])
                vals = anns[i][key]
                rec = self._record(anns[i], i)
                if key == "bbox":
                    if all(_is_num(v) for v in vals):
                        raise self._err(f"bbox {vals!r} has a negative width or height", record=rec)
                    raise self._err(f"bbox {vals!r} is not 4 finite numbers [x, y, w, h]", record=rec)
                culprit = next((v for v in vals if not _is_num(v)), None)
                raise self._err(f"keypoints contain {culprit!r}, not a finite number", record=rec)

    # -- instances ------------------------------------------------------------------------
    def gt_instances(self, image_dir: Path, limit: int | None = None) -> tuple[list[PoseInstance], dict]:
        """Top-down training/evaluation instances (mmpose filtering), and how many annotations
        of the file each rule skipped."""
        n = len(self.annotations)
        size = np.array([[self.images[a["image_id"]]["width"], self.images[a["image_id"]]["height"]]
                         for a in self.annotations], dtype=np.float64).reshape(n, 2)
        # boxes clipped to the last pixel row/column, as mmpose does before cropping
        x1y1 = np.clip(self.boxes[:, :2], 0.0, size - 1.0)
        x2y2 = np.clip(self.boxes[:, :2] + self.boxes[:, 2:], 0.0, size - 1.0)
        clipped = np.concatenate([x1y1, x2y2 - x1y1], axis=1).astype(np.float32)
        empty = ((x2y2 - x1y1) <= 0).any(axis=1)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in self.annotations], dtype=bool)
        no_kp = (self.keypoints.reshape(n, self.num_keypoints * 3).max(axis=1, initial=0) <= 0) | np.array(
            [a.get("num_keypoints", 1) == 0 for a in self.annotations], dtype=bool)
        keep = ~crowd & ~no_kp & ~empty
        out: list[PoseInstance] = []
        images: dict[int, Path] = {}
        for iid, rows in self.rows_by_image.items():
            for row in rows:
                if limit is not None and len(out) >= limit:
                    break
                if not keep[row]:
                    continue
                img = self.images[iid]
                if iid not in images:
                    images[iid] = image_dir / img["file_name"]
                ann = self.annotations[row]
                box = clipped[row]
                area = ann["area"] if "area" in ann else max(float(box[2]) * float(box[3]) * 0.53, 1.0)
                out.append(PoseInstance(
                    image=images[iid], image_id=iid, bbox=box.copy(), keypoints=self.keypoints[row].copy(),
                    ann_id=int(ann["id"]), area=float(area), iscrowd=0, width=int(img["width"]),
                    height=int(img["height"]), extra=self._image_extra(img, ann)))
        # counts describe the whole file, whatever the limit
        skipped = {"crowd": int(crowd.sum()), "no_keypoints": int((~crowd & no_kp).sum()),
                   "empty_box": int((~crowd & ~no_kp & empty).sum())}
        return out, skipped

    def det_instances(self, det_file: str | Path, image_dir: Path, *, score_thr: float = 0.0,
                      limit: int | None = None) -> list[PoseInstance]:
        """Instances from a person-detection result file (dummy keypoints, detector score)."""
        det_file = Path(det_file)
        dets = load_json(det_file)
        if not isinstance(dets, list):
            raise DataFormatError(det_file, f"expected a JSON list of detections, got {type(dets).__name__}")
        k = self.num_keypoints
        out: list[PoseInstance] = []
        for i, det in enumerate(dets):
            rec = f"detection #{i}"
            if not isinstance(det, dict):
                raise DataFormatError(det_file, "detection is not an object", record=rec)
            for key in ("image_id", "bbox", "score"):
                if key not in det:
                    raise DataFormatError(det_file, f"detection has no '{key}'", record=rec)
            if det.get("category_id", PERSON_CATEGORY_ID) != PERSON_CATEGORY_ID:
                continue  # mmpose keeps the person class only
            box, score = det["bbox"], det["score"]
            if not (isinstance(box, list) and len(box) == 4 and all(_is_num(v) for v in box)):
                raise DataFormatError(det_file, f"bbox {box!r} is not 4 finite numbers [x, y, w, h]", record=rec)
            if not _is_num(score):
                raise DataFormatError(det_file, f"score {score!r} is not a finite number", record=rec)
            img = self.images.get(det["image_id"])
            if img is None:
                raise DataFormatError(det_file, f"image_id {det['image_id']!r} is not in {self.path.name}",
                                      record=rec)
            if score < score_thr:
                continue
            if limit is not None and len(out) >= limit:
                break
            out.append(PoseInstance(
                image=image_dir / img["file_name"], image_id=det["image_id"],
                bbox=np.asarray(box, dtype=np.float32), keypoints=np.zeros((k, 3), np.float32),
                ann_id=-1, area=float(box[2] * box[3]), width=int(img["width"]), height=int(img["height"]),
                score=float(score), extra={**self._image_extra(img), "det_index": i}))
        return out

    def _image_extra(self, img: dict, ann: dict | None = None) -> dict:
        out: dict[str, Any] = {"crowd_index": float(img["crowdIndex"])} if "crowdIndex" in img else {}
        if ann is not None and len(self.category_ids) > 1:  # results must name the instance's category
            out["category_id"] = int(ann.get("category_id", self.category_id))
        return out

    def crowd_index(self) -> dict[int, float]:
        return {iid: float(img["crowdIndex"]) for iid, img in self.images.items() if "crowdIndex" in img}


def read_coco_keypoints(
    ann_file: str | Path,
    image_dir: str | Path,
    meta: KeypointMeta,
    *,
    name: str,
    split: str,
    limit: int | None = None,
    detections: str | Path | None = None,
    det_score_thr: float = 0.0,
) -> DatasetSplit[PoseInstance]:
    """Read a COCO-style keypoint file into top-down person instances.

    With ``detections`` the samples are the detector's boxes (score >= ``det_score_thr``)
    with zero keypoints, for evaluation with detected boxes; otherwise the filtered
    ground-truth instances. ``extra``: ``coco_gt`` (annotation path), ``image_ids`` (images
    the samples cover, for a limited evaluation), ``num_images``, ``skipped`` (counts by
    reason), and ``crowd_index`` ({image id: crowdIndex}) for CrowdPose.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    index = CocoKeypointIndex(load_json(ann_file), ann_file, meta.num_keypoints)
    return _split_from_index(index, image_dir, meta, name=name, split=split, limit=limit,
                             detections=detections, det_score_thr=det_score_thr)


def _split_from_index(index: CocoKeypointIndex, image_dir: Path, meta: KeypointMeta, *, name: str, split: str,
                      limit: int | None, detections: str | Path | None = None,
                      det_score_thr: float = 0.0) -> DatasetSplit[PoseInstance]:
    files = [index.path]
    skipped: dict = {}
    if detections is not None:
        samples = index.det_instances(detections, image_dir, score_thr=det_score_thr, limit=limit)
        files.append(Path(detections))
    else:
        samples, skipped = index.gt_instances(image_dir, limit=limit)
    extra: dict[str, Any] = {
        "coco_gt": index.path,
        "image_ids": list(dict.fromkeys(s.image_id for s in samples)),
        "num_images": len(index.images),
        "skipped": skipped,
        "boxes": "detected" if detections is not None else "ground_truth",
    }
    if ci := index.crowd_index():
        extra["crowd_index"] = ci
    return DatasetSplit(name=name, split=split, family="pose", samples=samples, meta=meta, files=files,
                        extra=extra)


def _flat_keypoints(kp: Any) -> list:
    arr = np.asarray(kp, dtype=np.float64).reshape(-1)
    return [int(v) if v.is_integer() else float(v) for v in arr.tolist()]


def write_coco_keypoints(
    path: str | Path,
    images: Sequence[dict],
    annotations: Sequence[dict],
    meta: KeypointMeta,
    *,
    info: dict | None = None,
) -> Path:
    """Write a COCO keypoint file that the readers and pycocotools accept, atomically.

    ``images``: ``{id, file_name, width, height, ...}`` (extra keys such as ``crowdIndex``
    are kept). ``annotations``: ``{image_id, bbox [x, y, w, h], keypoints (K*3 list or a
    (K, 3) array), ...}``; missing ``id`` (1, 2, ...), ``category_id`` (1), ``iscrowd`` (0),
    ``num_keypoints`` (labelled count) and ``area`` (box area) are filled in. The person
    category carries ``meta``'s keypoint names and 1-based skeleton. Invalid records raise
    :class:`DataFormatError` before anything is written.
    """
    from hcbench.io import atomic_write_text

    path = Path(path)
    anns = []
    for i, a in enumerate(annotations):
        a = dict(a)
        if "keypoints" in a:
            a["keypoints"] = _flat_keypoints(a["keypoints"])
        if "bbox" in a:
            a["bbox"] = [float(v) for v in np.asarray(a["bbox"], dtype=np.float64).reshape(-1).tolist()]
        a.setdefault("id", i + 1)
        a.setdefault("category_id", PERSON_CATEGORY_ID)
        a.setdefault("iscrowd", 0)
        if "keypoints" in a and isinstance(a["keypoints"], list):
            a.setdefault("num_keypoints", int(sum(1 for v in a["keypoints"][2::3] if v > 0)))
        if "bbox" in a and len(a["bbox"]) == 4:
            a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
        anns.append(a)
    doc = {
        "info": info or {"description": f"{meta.name} keypoints written by hcbench"},
        "licenses": [],
        "images": [dict(im) for im in images],
        "annotations": anns,
        "categories": [{
            "supercategory": "person", "id": PERSON_CATEGORY_ID, "name": "person",
            "keypoints": list(meta.keypoint_names),
            "skeleton": [[a + 1, b + 1] for a, b in meta.skeleton],  # COCO skeletons are 1-based
        }],
    }
    CocoKeypointIndex(doc, path, meta.num_keypoints)  # validate before writing
    atomic_write_text(path, json.dumps(doc, separators=(",", ":")))
    return path


def _split_file(root: Path, card: DatasetCard, split: str, role: str, *, required: bool = True) -> Path | None:
    rel = card.split(split).files.get(role)
    if rel is None:
        if required:
            raise DatasetCardError(f"dataset card {card.name!r}: split {split!r} lists no '{role}' file")
        return None
    return root / rel


@DATASETS.register("coco_keypoints")
def read(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit[PoseInstance]:
    """Ground-truth-box instances of one split; detected-box instances in ``extra["detections"]``.

    When the split lists a ``detections`` file that exists, its instances are read too
    (``extra["detections"]``, path in ``extra["detections_file"]``) so that an adapter can
    evaluate with detected boxes; a listed but absent file is reported in
    ``extra["detections_missing"]``. ``card.options["det_score_thr"]`` filters detections.
    """
    root = Path(root)
    meta = card.meta()
    assert isinstance(meta, KeypointMeta)
    ann = _split_file(root, card, split, "annotations")
    images = _split_file(root, card, split, "images")
    assert ann is not None and images is not None
    index = CocoKeypointIndex(load_json(ann), ann, meta.num_keypoints)
    out = _split_from_index(index, images, meta, name=card.name, split=split, limit=limit)
    det = _split_file(root, card, split, "detections", required=False)
    if det is not None:
        if det.is_file():
            thr = float(card.options.get("det_score_thr", 0.0))
            out.extra["detections"] = index.det_instances(det, images, score_thr=thr, limit=limit)
            out.extra["detections_file"] = det
        else:
            out.extra["detections_missing"] = det
    return out
