"""mIoU / pixel accuracy / mean accuracy against per-class set counting written out here."""

from __future__ import annotations

import numpy as np
import pytest

from hcbench.metrics.parsing import ConfusionMatrix, parsing_metrics


def reference(preds, gts, num_classes, ignore=255):
    """Per-class counting over the whole split, one class at a time (independent of bincount)."""
    tp = np.zeros(num_classes)
    fp = np.zeros(num_classes)
    fn = np.zeros(num_classes)
    correct = total = 0
    for p, g in zip(preds, gts, strict=True):
        valid = g != ignore
        correct += int(((p == g) & valid).sum())
        total += int(valid.sum())
        for c in range(num_classes):
            tp[c] += ((p == c) & (g == c) & valid).sum()
            fp[c] += ((p == c) & (g != c) & valid).sum()
            fn[c] += ((p != c) & (g == c) & valid).sum()
    present = (tp + fp + fn) > 0
    iou = [tp[c] / (tp[c] + fp[c] + fn[c]) if present[c] else None for c in range(num_classes)]
    in_gt = (tp + fn) > 0
    acc = [tp[c] / (tp[c] + fn[c]) for c in range(num_classes) if in_gt[c]]
    return {"mIoU": float(np.mean([v for v in iou if v is not None])), "pixel_acc": correct / total,
            "mean_acc": float(np.mean(acc)), "per_class_iou": iou}


def check(out, ref):
    assert out["mIoU"] == pytest.approx(ref["mIoU"], abs=1e-12)
    assert out["pixel_acc"] == pytest.approx(ref["pixel_acc"], abs=1e-12)
    assert out["mean_acc"] == pytest.approx(ref["mean_acc"], abs=1e-12)
    for a, b in zip(out["per_class_iou"], ref["per_class_iou"], strict=True):
        assert (np.isnan(a) and b is None) or a == pytest.approx(b, abs=1e-12)


def test_hand_worked():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 3, 1]])
    cm = ConfusionMatrix(5)
    cm.update(pred, gt)
    out = parsing_metrics(cm)
    # class 0: tp 1, fp 1, fn 1 -> 1/3; class 1: tp 3, fp 1, fn 0 -> 3/4; class 2: tp 1, fn 1 -> 1/2
    # class 3 only predicted on an ignored pixel -> absent from both -> NaN and left out; class 4 absent
    assert out["per_class_iou"][:3] == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert np.isnan(out["per_class_iou"][3]) and np.isnan(out["per_class_iou"][4])
    assert out["mIoU"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert out["pixel_acc"] == pytest.approx(5 / 7)
    assert out["mean_acc"] == pytest.approx((1 / 2 + 3 / 3 + 1 / 2) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_random_split_equals_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))  # classes; some never appear, some only in predictions
    preds, gts = [], []
    cm = ConfusionMatrix(n)
    for _ in range(int(rng.integers(1, 6))):
        shape = tuple(rng.integers(5, 40, 2))
        g = rng.integers(0, max(n - 2, 1), shape)
        g[rng.uniform(size=shape) < 0.1] = 255
        p = np.where(rng.uniform(size=shape) < 0.6, np.where(g == 255, 0, g), rng.integers(0, n, shape))
        preds.append(p)
        gts.append(g)
        cm.update(p.astype(np.uint8), g.astype(np.uint8))
    check(parsing_metrics(cm), reference(preds, gts, n))
    # accumulating image by image == one concatenated update (the metric is split-level, not per image)
    flat = ConfusionMatrix(n)
    flat.update(np.concatenate([p.ravel() for p in preds]), np.concatenate([g.ravel() for g in gts]))
    assert (flat.mat == cm.mat).all()


def test_merge_and_errors():
    a, b = ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(np.array([0, 1]), np.array([0, 2]))
    b.update(np.array([2]), np.array([2]))
    assert a.merge(b).mat.sum() == 3
    with pytest.raises(ValueError, match="shape"):
        a.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"predicted label\(s\) \[7\] outside 0..2"):
        a.update(np.array([7]), np.array([0]))
    with pytest.raises(ValueError, match=r"ground-truth label\(s\) \[5\]"):
        a.update(np.array([0]), np.array([5]))
    a.update(np.array([9]), np.array([255]))  # anything goes where the ground truth is ignored
