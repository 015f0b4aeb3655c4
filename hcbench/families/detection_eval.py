"""The detection evaluator: predictions are a JSON list of ``{"image_id", "bbox": [x, y, w, h],
"score"}`` in original image pixels; scored with the card's protocol — CrowdHuman (AP@0.5, MR-2,
JI) or CityPersons (MR-2 of ``setup`` plus ``MR-2_<s>`` for each of ``setups``).

Both sides are clipped to the image as the official CrowdHuman toolkit always does, so every
ground-truth image needs its size: from the reader (CityPersons cards state it), from a sizes
file, or from the image header. A missing size is an error, never a silently different score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.cards import TaskCard
from hcbench.data.types import DataFormatError, DatasetSplit, DetectionSample
from hcbench.errors import ConfigError
from hcbench.families.evaluator import BaseEvaluator, ScoreUsageError, exists, jsonable, read_json, to_numpy


def read_sizes(path: Path) -> dict[str, tuple[int, int]]:
    """A sizes file: JSON ``{image_id: [width, height]}`` (or a list of ``{image_id, width, height}``)."""
    data = read_json(Path(path), "image sizes")
    rows = data.items() if isinstance(data, dict) else (
        ((r.get("image_id"), (r.get("width"), r.get("height"))) for r in data if isinstance(r, dict))
        if isinstance(data, list) else None)
    if rows is None:
        raise DataFormatError(path, "expected {image_id: [width, height]} or a list of {image_id, width, height}")
    out = {}
    for key, wh in rows:
        try:
            w, h = (int(v) for v in wh)
        except (TypeError, ValueError):
            raise DataFormatError(path, f"size {wh!r} is not [width, height]", record=str(key)) from None
        if w <= 0 or h <= 0:
            raise DataFormatError(path, f"size {wh!r} is not positive", record=str(key))
        out[str(key)] = (w, h)
    return out


def image_size(sample: DetectionSample, sizes: Mapping[str, tuple[int, int]] | None = None) -> tuple[int, int]:
    """(width, height) of a ground-truth image for clipping: the reader's, the sizes file's, or the
    image header's; a clear error when none is available."""
    if sample.width > 0 and sample.height > 0:
        return sample.width, sample.height
    if sizes is not None and sample.image_id in sizes:
        return sizes[sample.image_id]
    if Path(sample.image).is_file():
        from PIL import Image

        with Image.open(sample.image) as im:  # the header only
            return im.size
    hint = "the sizes file has no entry for it" if sizes is not None else "pass --sizes FILE ({image_id: [w, h]})"
    raise DataFormatError(sample.image, f"no size for image {sample.image_id!r}: boxes are clipped to the image "
                          f"as the official evaluation does, but the image is missing and {hint}")


def ground_truth(split: DatasetSplit, sizes: Mapping[str, tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """The split as the metric functions take it, with every image's size (boxes are clipped)."""
    out = []
    for s in split.samples:
        w, h = image_size(s, sizes)
        out.append({"image_id": s.image_id, "boxes": s.boxes, "visible": s.visible, "ignore": s.ignore,
                    "labels": s.labels, "width": w, "height": h})
    return out


def read_detections(path: Path, known: set[str], gt_name: str | None = None) -> dict[str, np.ndarray]:
    """A predictions file -> image id -> (K, 5) [x, y, w, h, score], with clear errors."""
    results = read_json(Path(path), "detections")
    if not isinstance(results, list):
        raise DataFormatError(path, "expected a JSON list of {image_id, bbox, score}")
    per: dict[str, list[list[float]]] = {}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not {"image_id", "bbox", "score"} <= set(r):
            raise DataFormatError(path, "expected an object with image_id, bbox, score", record=i)
        if r["image_id"] not in known:
            where = f" (not in {gt_name})" if gt_name else ""
            raise DataFormatError(path, f"unknown image id {r['image_id']!r}{where}", record=i)
        try:
            row = [float(v) for v in r["bbox"]] + [float(r["score"])]
        except (TypeError, ValueError):
            raise DataFormatError(path, "bbox and score must be numbers", record=i) from None
        if len(row) != 5:
            raise DataFormatError(path, f"bbox has {len(row) - 1} values, expected 4 [x, y, w, h]", record=i)
        if not all(math.isfinite(v) for v in row):
            raise DataFormatError(path, "NaN or inf in bbox or score", record=i)
        per.setdefault(r["image_id"], []).append(row)
    return {k: np.asarray(v, np.float64) for k, v in per.items()}


def protocol_metrics(gts: list[dict[str, Any]], dets: dict[str, np.ndarray], opts: Mapping[str, Any]) -> dict[str, float]:
    """The card's detection protocol on prepared ground truth and detections."""
    from hcbench.metrics.detection import citypersons_mr, crowdhuman_eval

    protocol = str(opts.get("protocol", "crowdhuman"))
    if protocol == "crowdhuman":
        return {k: float(v) for k, v in crowdhuman_eval(gts, dets).items()}
    if protocol == "citypersons":
        out = {"MR-2": float(citypersons_mr(gts, dets, str(opts.get("setup", "reasonable")))["MR-2"])}
        for setup in opts.get("setups", []):
            out[f"MR-2_{setup}"] = float(citypersons_mr(gts, dets, str(setup))["MR-2"])
        return out
    raise ConfigError(f"eval.options.protocol must be crowdhuman or citypersons, got {protocol!r}")


def read_odgt(path: Path, images: Path) -> list[DetectionSample]:
    """A CrowdHuman .odgt through the dataset reader's own parser (repeated IDs are errors)."""
    from hcbench.data.readers.detection import read_odgt_file

    samples = read_odgt_file(exists(path, "CrowdHuman ground truth"), images)
    if not samples:
        raise DataFormatError(path, "no records")
    return samples


def eval_options(card: TaskCard) -> dict[str, Any]:
    from hcbench.families.detection import DetectionEvalOptions

    return DetectionEvalOptions.model_validate(dict(card.eval.options)).model_dump()


class DetectionEvaluator(BaseEvaluator):
    family = "detection"
    predictions_suffix = ".json"

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        from hcbench.io import atomic_write_json

        rows = []
        for p in sorted(predictions, key=lambda p: int(p["index"])):
            image_id = split.samples[int(p["index"])].image_id
            boxes = to_numpy(p["boxes"]).reshape(-1, 4).tolist()
            for box, score in zip(boxes, to_numpy(p["scores"]).reshape(-1).tolist(), strict=True):
                rows.append({"image_id": image_id, "bbox": [round(v, 2) for v in box], "score": round(score, 5)})
        atomic_write_json(Path(path), rows)
        return Path(path)

    def read(self, path: Path, split: DatasetSplit, card: TaskCard | None = None) -> dict[str, np.ndarray]:
        return read_detections(Path(path), {s.image_id for s in split.samples})

    def score(self, path: Path, split: DatasetSplit, card: TaskCard,
              sizes: Mapping[str, tuple[int, int]] | None = None) -> dict[str, float]:
        gts = ground_truth(split, sizes)
        dets = read_detections(Path(path), {g["image_id"] for g in gts})
        return protocol_metrics(gts, dets, eval_options(card))

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    sizes: Path | None = None, images: Path | None = None, **unknown: Any) -> dict[str, Any]:
        """Without ``card``: the CrowdHuman protocol against the .odgt ``gt``. With ``card``: its
        protocol (CrowdHuman or CityPersons setups) on its eval split read from ``gt``. Image sizes
        for clipping come from the images (``images`` or ``Images/`` beside the odgt) or ``sizes``."""
        if unknown:
            raise ScoreUsageError(f"hcbench score detection: unknown option(s) {sorted(unknown)}")
        if gt is None:
            raise ScoreUsageError("hcbench score detection: pass --gt")
        size_map = read_sizes(sizes) if sizes is not None else None
        gt = exists(gt, "ground truth")
        if card is not None:
            from hcbench.families.evaluator import root_from_gt

            if gt.is_dir() or root_from_gt(card, gt) is not None:
                split = self.split_from_gt(card, gt)
                if images is not None:
                    for s in split.samples:
                        s.image = Path(images) / Path(s.image).name
                return jsonable(self.score(exists(pred, "predictions"), split, card, size_map))
            if not str(gt).endswith(".odgt"):
                raise ScoreUsageError(f"{gt}: with --card {card.name}, --gt is the {card.dataset.name} dataset root "
                                      "or a CrowdHuman .odgt")
        samples = read_odgt(gt, Path(images) if images is not None else gt.parent / "Images")
        split = DatasetSplit(gt.stem, "score", "detection", samples, None, files=[gt])
        gts = ground_truth(split, size_map)
        dets = read_detections(exists(pred, "predictions"), {g["image_id"] for g in gts}, gt.name)
        opts = {"protocol": "crowdhuman"} if card is None else eval_options(card)
        return jsonable(protocol_metrics(gts, dets, opts))
