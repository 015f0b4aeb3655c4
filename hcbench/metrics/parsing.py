"""Human-parsing metrics from a confusion matrix accumulated over the whole split.

mIoU is the mean over classes of TP / (TP + FP + FN) computed from the split's summed confusion
matrix, not an average of per-image scores (the LIP/CIHP/mmseg convention). As in mmseg, a class
absent from both the ground truth and the predictions (union 0) has an undefined IoU (NaN) and is
left out of the mean; a class absent from the ground truth has an undefined accuracy and is left out
of ``mean_acc``. Pixels whose ground truth is ``ignore_index`` are not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ConfusionMatrix:
    """``mat[g, p]`` counts pixels of ground-truth class ``g`` predicted as ``p``."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.mat = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one prediction/ground-truth pair of label maps (any equal shapes, integer labels)."""
        pred = np.asarray(pred)
        gt = np.asarray(gt)
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground-truth shape {gt.shape}")
        for name, arr in (("prediction", pred), ("ground truth", gt)):
            if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.bool_)):
                raise ValueError(f"{name} labels must be integers, got dtype {arr.dtype}")
        keep = gt != self.ignore_index
        g = gt[keep].astype(np.int64)
        p = pred[keep].astype(np.int64)
        n = self.num_classes
        # out-of-range labels are a bug upstream (wrong num_classes, unmapped raw ids): say so
        for name, arr in (("ground-truth", g), ("predicted", p)):
            bad = (arr < 0) | (arr >= n)
            if bad.any():
                raise ValueError(f"{name} label(s) {np.unique(arr[bad])[:10].tolist()} outside 0..{n - 1} "
                                 f"(ignore_index {self.ignore_index})")
        self.mat += np.bincount(n * g + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix (e.g. from another rank) into this one."""
        if other.num_classes != self.num_classes:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.mat += other.mat
        return self

    def reset(self) -> None:
        self.mat[:] = 0


def parsing_metrics(conf: ConfusionMatrix | np.ndarray) -> dict[str, Any]:
    """mIoU, pixel_acc, mean_acc (fractions) and per_class_iou (NaN for classes absent from both)."""
    mat = np.asarray(conf.mat if isinstance(conf, ConfusionMatrix) else conf, dtype=np.float64)
    tp = np.diag(mat)
    gt_count = mat.sum(1)
    pred_count = mat.sum(0)
    union = gt_count + pred_count - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt_count > 0, tp / gt_count, np.nan)
    total = mat.sum()
    return {
        "mIoU": float(np.nanmean(iou)) if np.any(union > 0) else 0.0,
        "pixel_acc": float(tp.sum() / total) if total > 0 else 0.0,
        "mean_acc": float(np.nanmean(acc)) if np.any(gt_count > 0) else 0.0,
        "per_class_iou": iou.tolist(),
    }
