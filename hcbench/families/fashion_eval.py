"""The Fashionpedia evaluator: predictions are COCO results with attributes, scored with the official
Fashionpedia evaluation (:mod:`hcbench.metrics.fashionpedia`), masks and boxes.

Predictions file (``.json``, also the ``hcbench score fashion --pred`` format, and the official
API's result format): a list of ::

    {"image_id": int, "category_id": int, "score": float,
     "segmentation": {"size": [h, w], "counts": str},      # RLE in original image pixels
     "bbox": [x, y, w, h],                                  # optional: the mask's box otherwise
     "attribute_ids": [int],                                # the predicted attribute set
     "attribute_scores": [float]}                           # optional, ignored by the metric
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from hcbench.cards import TaskCard
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.families.evaluator import BaseEvaluator, ScoreUsageError, exists, jsonable, read_json, to_numpy


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_results(path: Path, gt: dict, gt_name: str | None = None) -> list[dict]:
    """A results file validated against the ground truth ``gt`` (images, categories, attributes);
    a bad record raises :class:`DataFormatError` naming the file and record index."""
    path = Path(path)
    results = read_json(path, "Fashionpedia results")
    if not isinstance(results, list):
        raise DataFormatError(path, "expected a JSON list of {image_id, category_id, segmentation, score, "
                                    "attribute_ids}")
    sizes = {img["id"]: [img["height"], img["width"]] for img in gt["images"]}
    cats = {c["id"] for c in gt["categories"]}
    atts = {a["id"] for a in gt.get("attributes") or []}
    where = f" (not in {gt_name})" if gt_name else ""
    out = []
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "category_id", "score", "segmentation"} <= set(r):
            raise DataFormatError(path, "expected an object with image_id, category_id, segmentation, score "
                                        "(and attribute_ids)", record=i)
        if r["image_id"] not in sizes:
            raise DataFormatError(path, f"unknown image id {r['image_id']!r}{where}", record=i)
        if r["category_id"] not in cats:
            raise DataFormatError(path, f"unknown category id {r['category_id']!r}{where}", record=i)
        if not _num(r["score"]):
            raise DataFormatError(path, f"score {r['score']!r} is not a finite number", record=i)
        seg = r["segmentation"]
        if not (isinstance(seg, dict) and isinstance(seg.get("counts"), (str, list)) and seg.get("size") is not None):
            raise DataFormatError(path, "segmentation must be an RLE object {size: [h, w], counts}", record=i)
        if list(seg["size"]) != sizes[r["image_id"]]:
            raise DataFormatError(path, f"RLE size {seg['size']} differs from image {r['image_id']}'s [height, width] "
                                        f"{sizes[r['image_id']]}", record=i)
        if isinstance(seg["counts"], list):  # uncompressed RLE: compress, as the metric's mask code needs
            from pycocotools import mask as mask_utils

            rle = mask_utils.frPyObjects(seg, *seg["size"])
            seg = {"size": list(seg["size"]), "counts": rle["counts"].decode("ascii")}
        row = {"image_id": r["image_id"], "category_id": r["category_id"], "score": float(r["score"]),
               "segmentation": seg}
        if "bbox" in r:
            box = r["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(_num(v) for v in box)):
                raise DataFormatError(path, f"bbox {box!r} is not 4 finite numbers [x, y, w, h]", record=i)
            row["bbox"] = [float(v) for v in box]
        ids = r.get("attribute_ids", [])
        if not isinstance(ids, list) or not all(isinstance(a, int) and not isinstance(a, bool) for a in ids):
            raise DataFormatError(path, f"attribute_ids must be a list of integers, got {ids!r}"[:200], record=i)
        unknown = sorted(set(ids) - atts)
        if unknown:
            raise DataFormatError(path, f"attribute ids {unknown} are not in the ground truth's attributes{where}",
                                  record=i)
        row["attribute_ids"] = list(ids)
        out.append(row)
    return out


def attribute_categories(card: TaskCard | None, split: DatasetSplit | None) -> list[int] | None:
    """The category ids scored with the F1 constraint: the card's ``eval.options``, else the dataset
    card's (``split.meta``), else None (the official Fashionpedia list)."""
    if card is not None and card.eval.options.get("attribute_categories") is not None:
        return [int(c) for c in card.eval.options["attribute_categories"]]
    meta = getattr(split, "meta", None) if split is not None else None
    cats = getattr(meta, "attribute_categories", None)
    return [int(c) for c in cats] if cats else None


class FashionEvaluator(BaseEvaluator):
    family = "fashion"
    predictions_suffix = ".json"

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        """Adapter predictions (``index``, ``boxes`` xywh, ``scores``, ``labels`` as category ids, ``masks``
        as RLE objects, ``attributes`` as (K, A) probabilities) -> the results file."""
        from hcbench.io import atomic_write_json

        thr = float(card.eval.options.get("attribute_threshold", 0.5))
        att_ids = list(split.meta.attribute_ids)
        rows = []
        for p in sorted(predictions, key=lambda p: int(p["index"])):
            image_id = split.samples[int(p["index"])].image_id
            boxes = to_numpy(p["boxes"]).reshape(-1, 4).tolist()
            scores = to_numpy(p["scores"]).reshape(-1).tolist()
            labels = to_numpy(p["labels"]).reshape(-1).tolist()
            probs = to_numpy(p["attributes"]).reshape(len(boxes), len(att_ids))
            for k, (box, score, cat, rle) in enumerate(zip(boxes, scores, labels, p["masks"], strict=True)):
                on = [j for j in range(len(att_ids)) if probs[k, j] >= thr]
                rows.append({"image_id": image_id, "category_id": int(cat), "bbox": [round(v, 2) for v in box],
                             "score": round(float(score), 5), "segmentation": rle,
                             "attribute_ids": [int(att_ids[j]) for j in on],
                             "attribute_scores": [round(float(probs[k, j]), 4) for j in on]})
        atomic_write_json(Path(path), rows)
        return Path(path)

    def read(self, path: Path, split: DatasetSplit, card: TaskCard | None = None) -> list[dict]:
        from hcbench.data.readers.fashionpedia import ground_truth

        return read_results(Path(path), ground_truth(split))

    def score(self, path: Path, split: DatasetSplit, card: TaskCard | None) -> dict[str, float]:
        from hcbench.data.readers.fashionpedia import ground_truth
        from hcbench.metrics.fashionpedia import fashionpedia_metrics

        gt = ground_truth(split)
        results = read_results(Path(path), gt)
        return fashionpedia_metrics(gt, results, attribute_categories=attribute_categories(card, split))

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    attribute_categories: str | None = None, **unknown: Any) -> dict[str, Any]:
        """Without ``card``: ``gt`` is a Fashionpedia annotation file (every image is scored; the F1
        constraint applies to ``attribute_categories``, comma-separated ids, default Fashionpedia's
        18). With ``card``: its eval split read from the dataset root ``gt`` names."""
        if unknown:
            raise ScoreUsageError(f"hcbench score fashion: unknown option(s) {sorted(unknown)}")
        cats = _parse_ids(attribute_categories) if attribute_categories is not None else None
        if card is not None:
            if cats is not None:
                raise ScoreUsageError(f"card {card.name!r} fixes the protocol; drop --attribute-categories")
            return super().score_files(pred, gt, card)
        if gt is None:
            raise ScoreUsageError("hcbench score fashion: pass --gt (a Fashionpedia annotation file)")
        from hcbench.data.readers.fashionpedia import FashionpediaIndex, load_annotations
        from hcbench.metrics.fashionpedia import fashionpedia_metrics

        gt_path = exists(gt, "ground truth")
        index = FashionpediaIndex(load_annotations(gt_path), gt_path)  # validates every record
        results = read_results(exists(pred, "predictions"), index.doc, gt_path.name)
        return jsonable(fashionpedia_metrics(index.doc, results, attribute_categories=cats))


def _parse_ids(text: str) -> list[int]:
    try:
        return [int(v) for v in str(text).replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ScoreUsageError(f"--attribute-categories {text!r}: expected comma-separated category ids") from None


EVALUATOR = FashionEvaluator()
