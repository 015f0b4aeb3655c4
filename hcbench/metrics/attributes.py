"""Pedestrian-attribute metrics as the field reports them.

Follows ``get_pedestrian_metrics`` of Jia et al., "Rethinking of Pedestrian Attribute Recognition"
(valencebond/Rethinking_of_PAR), against which PA-100K/PETA/RAPv2 numbers are compared:

* a prediction is positive when ``score > threshold`` (strict);
* label-based ``mA`` = mean over attributes of (TP/P + TN/N) / 2;
* instance-based ``accuracy`` = mean |y ∧ ŷ| / |y ∨ ŷ|, ``precision`` = mean |y ∧ ŷ| / |ŷ|,
  ``recall`` = mean |y ∧ ŷ| / |y|, and ``F1`` = 2·P·R / (P + R) of those *means* (not a mean of
  per-instance F1s);
* empty sets are guarded exactly as there: every ratio is ``x / (d + 1e-20)``, so an empty
  denominator (an attribute with no positive sample, an instance with no predicted or no true
  attribute) contributes 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EPS = 1e-20  # the reference implementation's guard


def attribute_metrics(gt: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """mA, accuracy, precision, recall, F1 (fractions) and ``mA_per_attr`` for (N, A) inputs."""
    gt = np.asarray(gt)
    scores = np.asarray(scores, dtype=np.float64)
    if gt.ndim != 2 or gt.shape != scores.shape:
        raise ValueError(f"gt and scores must both be (N, A); got {gt.shape} and {scores.shape}")
    if gt.shape[0] == 0:
        raise ValueError("no samples")
    if not np.all(np.isin(gt, (0, 1))):
        raise ValueError(f"gt labels must be 0 or 1, found {np.unique(gt[~np.isin(gt, (0, 1))])[:10].tolist()}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("NaN or inf in scores")
    y = gt == 1
    yhat = scores > threshold

    # label-based
    pos = y.sum(0)
    neg = (~y).sum(0)
    tp = (y & yhat).sum(0)
    tn = (~y & ~yhat).sum(0)
    ma_per_attr = (tp / (pos + _EPS) + tn / (neg + _EPS)) / 2

    # instance-based
    inter = (y & yhat).sum(1)
    union = (y | yhat).sum(1)
    acc = float(np.mean(inter / (union + _EPS)))
    prec = float(np.mean(inter / (yhat.sum(1) + _EPS)))
    rec = float(np.mean(inter / (y.sum(1) + _EPS)))
    f1 = 2 * prec * rec / (prec + rec + _EPS)
    return {
        "mA": float(np.mean(ma_per_attr)),
        "accuracy": acc,
        "precision": prec,
        "recall": rec,
        "F1": float(f1),
        "mA_per_attr": ma_per_attr.tolist(),
    }
