"""The parsing evaluator: predictions are label maps at the original image resolution, one
``uint8`` array per sample keyed by ``sample_id`` in a compressed ``.npz`` (read back with
``allow_pickle=False``); scored as mIoU / pixel accuracy / mean accuracy and per-class IoU over
the whole split. ``hcbench score parsing`` also takes two folders of PNG label maps.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.cards import TaskCard
from hcbench.data.types import DataFormatError, DatasetSplit, ParsingMeta
from hcbench.families.evaluator import BaseEvaluator, ScoreUsageError, exists, jsonable, to_numpy


def _label_png(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataFormatError(path, f"expected a single-channel label map, got PNG mode {im.mode}")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(path, f"not a readable PNG: {e}") from None


def score_png_folders(gt: Path, pred: Path, num_classes: int, ignore_index: int = 255) -> dict[str, Any]:
    """mIoU etc. of the PNG label maps under ``pred`` against those under ``gt`` (same relative names)."""
    from hcbench.metrics.parsing import ConfusionMatrix, parsing_metrics

    gt, pred = Path(gt), Path(pred)
    for d, what in ((gt, "ground-truth folder"), (pred, "prediction folder")):
        if not d.is_dir():
            exists(d, what)
            raise ScoreUsageError(f"{d}: not a folder ({what})")
    gt_files = sorted(p.relative_to(gt) for p in gt.rglob("*.png"))
    if not gt_files:
        raise DataFormatError(gt, "no PNG label maps found (searched recursively)")
    extra = sorted(set(p.relative_to(pred) for p in pred.rglob("*.png")) - set(gt_files))
    if extra:
        raise DataFormatError(pred / extra[0], f"prediction without a ground-truth counterpart in {gt} "
                              f"({len(extra)} such file(s))")
    conf = ConfusionMatrix(num_classes, ignore_index)
    for rel in gt_files:
        p_path = pred / rel
        if not p_path.exists():
            raise DataFormatError(p_path, f"missing prediction for ground truth {gt / rel}")
        g = _label_png(gt / rel)
        p = _label_png(p_path)
        if g.shape != p.shape:
            raise DataFormatError(p_path, f"size {p.shape[1]}x{p.shape[0]} differs from the ground truth's "
                                  f"{g.shape[1]}x{g.shape[0]} ({gt / rel})")
        bad = (g >= num_classes) & (g != ignore_index)
        if bad.any():
            raise DataFormatError(gt / rel, f"ground-truth label(s) {np.unique(g[bad])[:10].tolist()} outside "
                                  f"0..{num_classes - 1} and not ignore_index {ignore_index}")
        bad = (p >= num_classes) & (g != ignore_index)
        if bad.any():
            raise DataFormatError(p_path, f"predicted label(s) {np.unique(p[bad])[:10].tolist()} outside "
                                  f"0..{num_classes - 1}")
        conf.update(p, g)
    return jsonable(parsing_metrics(conf))


def score_file(path: Path, split: DatasetSplit) -> dict[str, float]:
    """mIoU / pixel_acc / mean_acc and ``IoU/<class>`` from a predictions ``.npz`` against the
    split's label PNGs (remapped to train ids), accumulated over the whole split."""
    from hcbench.data.transforms.image import load_label
    from hcbench.metrics.parsing import ConfusionMatrix, parsing_metrics

    meta: ParsingMeta = split.meta
    conf = ConfusionMatrix(meta.num_classes, meta.ignore_index)
    remap = meta.remap_lut()
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataFormatError(path, f"not a readable .npz of label maps: {e}") from None
    with npz:
        have = set(npz.files)
        for s in split.samples:
            if s.sample_id not in have:
                raise DataFormatError(path, "no prediction for this sample", record=s.sample_id)
            try:
                pred = npz[s.sample_id]
            except ValueError as e:  # object arrays need pickle, which is never allowed here
                raise DataFormatError(path, f"unreadable array (pickled objects are refused): {e}",
                                      record=s.sample_id) from None
            gt = remap[load_label(s.label)]
            if pred.shape != gt.shape or pred.dtype != np.uint8:
                raise DataFormatError(path, f"prediction is {pred.dtype} {pred.shape}, expected uint8 {gt.shape} "
                                      f"(the label {s.label.name})", record=s.sample_id)
            if pred.max(initial=0) >= meta.num_classes:
                raise DataFormatError(path, f"class id {int(pred.max())} outside 0..{meta.num_classes - 1}",
                                      record=s.sample_id)
            conf.update(pred, gt)
    m = parsing_metrics(conf)
    out = {"mIoU": m["mIoU"], "pixel_acc": m["pixel_acc"], "mean_acc": m["mean_acc"]}
    for name, iou in zip(meta.class_names, m["per_class_iou"], strict=True):
        if not np.isnan(iou):
            out[f"IoU/{name}"] = float(iou)
    return out


class ParsingEvaluator(BaseEvaluator):
    family = "parsing"
    predictions_suffix = ".npz"

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        from hcbench.io import atomic_write_bytes

        arrays: dict[str, np.ndarray] = {}
        for p in predictions:
            sid = split.samples[int(p["index"])].sample_id
            arrays.setdefault(sid, np.ascontiguousarray(to_numpy(p["label"]).astype(np.uint8)))
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    def read(self, path: Path, split: DatasetSplit | None = None, card: TaskCard | None = None) -> dict[str, np.ndarray]:
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise DataFormatError(path, f"not a readable .npz of label maps: {e}") from None

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return score_file(path, split)

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    num_classes: int | None = None, ignore_index: int | None = None,
                    **unknown: Any) -> dict[str, Any]:
        """Two PNG folders (``--num-classes`` required without a card); with ``card``: the run's
        ``.npz`` against the dataset root ``gt``, or PNG folders with the dataset's class count."""
        if unknown:
            raise ScoreUsageError(f"hcbench score parsing: unknown option(s) {sorted(unknown)}")
        if gt is None:
            raise ScoreUsageError("hcbench score parsing: pass --gt")
        pred = exists(pred, "predictions")
        if card is not None and pred.is_file():
            if num_classes is not None or ignore_index is not None:
                raise ScoreUsageError(f"card {card.name!r} fixes the classes; drop --num-classes/--ignore-index")
            return jsonable(score_file(pred, self.split_from_gt(card, gt)))
        if card is not None:
            from hcbench.data.cards import get_dataset_card

            meta = get_dataset_card(card.dataset.name).meta()
            num_classes = num_classes if num_classes is not None else meta.num_classes
            ignore_index = ignore_index if ignore_index is not None else meta.ignore_index
        if num_classes is None:
            raise ScoreUsageError("hcbench score parsing: pass --num-classes (or --card NAME)")
        return score_png_folders(Path(gt), pred, num_classes, 255 if ignore_index is None else ignore_index)
