"""The attribute evaluator. Predictions file (``.npz``): ``probs`` (N x A float32, rows in split
order), ``names`` (image paths relative to the data root) and ``attributes`` (the A names in column
order). Scored with label-based mA and instance accuracy/precision/recall/F1 at the card's
``eval.options.threshold``. ``hcbench score attributes`` also takes bare ``.npy`` arrays.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.cards import TaskCard
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.families.evaluator import (
    BaseEvaluator,
    ScoreUsageError,
    exists,
    jsonable,
    relative_name,
    split_root,
    to_numpy,
)

KEYS = ("mA", "accuracy", "precision", "recall", "F1")


def load_array(path: Path, what: str) -> np.ndarray:
    """A plain ``.npy`` array, or the ``probs`` (``labels``/``scores``) of an ``.npz``; no pickles."""
    exists(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):
            with arr:
                key = next((k for k in ("probs", "labels", "scores") if k in arr.files), None)
                if key is None:
                    raise DataFormatError(path, f"{what}: an .npz needs a 'probs' array, found {arr.files}")
                return arr[key]
        return arr
    except (ValueError, EOFError) as e:  # pickled object arrays, malformed headers, an empty file
        raise DataFormatError(path, f"not a plain .npy array ({what}): {e}") from None
    except OSError as e:
        raise DataFormatError(path, f"cannot read ({what}): {e}") from None


def score_arrays(g: np.ndarray, p: np.ndarray, gt: Path, pred: Path, threshold: float) -> dict[str, Any]:
    from hcbench.metrics.attributes import attribute_metrics

    if g.ndim != 2:
        raise DataFormatError(gt, f"expected an N x A array, got shape {g.shape}")
    if p.shape != g.shape:
        raise DataFormatError(pred, f"shape {p.shape} differs from the ground truth's {g.shape} ({gt})")
    if not np.issubdtype(p.dtype, np.number) or not np.issubdtype(g.dtype, np.number):
        raise DataFormatError(pred if not np.issubdtype(p.dtype, np.number) else gt, "expected a numeric array")
    if np.issubdtype(p.dtype, np.floating) and not np.all(np.isfinite(p)):
        bad = np.argwhere(~np.isfinite(p))[0]
        raise DataFormatError(pred, "NaN or inf in scores", record=f"scores{list(bad.tolist())}")
    bad = ~np.isin(g, (0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataFormatError(gt, f"label {g[i, j].item()!r} is not 0 or 1", record=f"row {i}, attribute {j}")
    return jsonable({k: v for k, v in attribute_metrics(g, p, threshold).items() if k in KEYS})


def threshold_of(card: TaskCard) -> float:
    from hcbench.families.attributes import AttributeEvalOptions

    return float(AttributeEvalOptions.model_validate(dict(card.eval.options)).threshold)


class AttributeEvaluator(BaseEvaluator):
    family = "attributes"
    predictions_suffix = ".npz"

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        from hcbench.io import atomic_write_bytes

        by_index = {int(p["index"]): p for p in predictions}
        missing = [i for i in range(len(split.samples)) if i not in by_index]
        if missing:
            raise ValueError(f"{card.name}: no prediction for {len(missing)} images "
                             f"(first: {split.samples[missing[0]].image})")
        probs = np.stack([to_numpy(by_index[i]["probs"]).astype(np.float32) for i in range(len(split.samples))])
        root = split_root(split)
        names = np.array([relative_name(s.image, root) for s in split.samples], dtype=str)
        attributes = getattr(split.meta, "attribute_names", ())
        buf = io.BytesIO()
        np.savez_compressed(buf, probs=probs.astype(np.float32), names=names,
                            attributes=np.array(attributes, dtype=str))
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    def read(self, path: Path, split: DatasetSplit, card: TaskCard | None = None) -> np.ndarray:
        """The ``probs`` rows, checked against the split (shape, and image names when present)."""
        try:
            with np.load(path, allow_pickle=False) as z:
                if "probs" not in z.files:
                    raise DataFormatError(path, "predictions file lacks 'probs'")
                probs = z["probs"]
                names = z["names"] if "names" in z.files else None
        except (OSError, ValueError, EOFError) as e:
            if isinstance(e, DataFormatError):
                raise
            raise DataFormatError(path, f"not a readable .npz: {e}") from None
        n, a = len(split.samples), len(getattr(split.meta, "attribute_names", ())) or (
            len(split.samples[0].labels) if split.samples else 0)
        if probs.shape != (n, a):
            raise DataFormatError(path, f"probs have shape {probs.shape}, {split.name}/{split.split} has {(n, a)} "
                                  "(images x attributes)")
        if names is not None:
            root = split_root(split)
            want = [relative_name(s.image, root) for s in split.samples]
            if list(names) != want:
                bad = next(i for i, (x, y) in enumerate(zip(names, want, strict=True)) if x != y)
                raise DataFormatError(path, f"row {bad} is {names[bad]!r}, the split has {want[bad]!r}")
        return probs

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        from hcbench.metrics.attributes import attribute_metrics

        probs = self.read(path, split, card)
        gt = np.stack([s.labels for s in split.samples]).astype(np.uint8)
        m = attribute_metrics(gt, probs, threshold=threshold_of(card))
        return {k: float(m[k]) for k in KEYS}

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    threshold: float | None = None, **unknown: Any) -> dict[str, Any]:
        """N x A scores against N x A 0/1 labels (``.npy``); with ``card``: its threshold, and
        ``gt`` may be the dataset root (the run's ``.npz`` against the card's eval split)."""
        if unknown:
            raise ScoreUsageError(f"hcbench score attributes: unknown option(s) {sorted(unknown)}")
        if gt is None:
            raise ScoreUsageError("hcbench score attributes: pass --gt")
        if card is not None and threshold is not None:
            raise ScoreUsageError(f"card {card.name!r} fixes the threshold; drop --threshold")
        gt = exists(gt, "ground-truth labels")
        if card is not None:
            from hcbench.families.evaluator import root_from_gt

            if gt.is_dir() or root_from_gt(card, gt) is not None:
                return jsonable(self.score(exists(pred, "predictions"), self.split_from_gt(card, gt), card))
            threshold = threshold_of(card)
        g = load_array(gt, "ground-truth labels")
        p = load_array(Path(pred), "attribute scores")
        return score_arrays(g, p, gt, Path(pred), 0.5 if threshold is None else threshold)
