"""mA and instance metrics against a loop-by-loop reference and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from hcbench.metrics.attributes import attribute_metrics


def reference(gt, scores, thr=0.5):
    """Written from the definitions; empty sets contribute 0 as in Jia et al.'s code."""
    n, a = gt.shape
    pred = scores > thr
    ma = []
    for j in range(a):
        pos = [i for i in range(n) if gt[i, j] == 1]
        neg = [i for i in range(n) if gt[i, j] == 0]
        tpr = sum(pred[i, j] for i in pos) / len(pos) if pos else 0.0
        tnr = sum(not pred[i, j] for i in neg) / len(neg) if neg else 0.0
        ma.append((tpr + tnr) / 2)
    acc, prec, rec = [], [], []
    for i in range(n):
        y = {j for j in range(a) if gt[i, j] == 1}
        yh = {j for j in range(a) if pred[i, j]}
        acc.append(len(y & yh) / len(y | yh) if y | yh else 0.0)
        prec.append(len(y & yh) / len(yh) if yh else 0.0)
        rec.append(len(y & yh) / len(y) if y else 0.0)
    p, r = np.mean(prec), np.mean(rec)
    return {"mA": np.mean(ma), "accuracy": np.mean(acc), "precision": p, "recall": r,
            "F1": 2 * p * r / (p + r) if p + r else 0.0}


def test_hand_worked():
    gt = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]])
    sc = np.array([[0.9, 0.2, 0.4], [0.6, 0.1, 0.7], [0.8, 0.5, 0.3]])  # 0.5 is not > 0.5
    out = attribute_metrics(gt, sc)
    # attr 0: P={0,2} both hit, N={1} missed -> (1+0)/2; attr 1: P={2} missed, N={0,1} ok -> 0.5;
    # attr 2: P={0,1} one hit, N={2} ok -> (0.5+1)/2
    assert out["mA_per_attr"] == pytest.approx([0.5, 0.5, 0.75])
    assert out["mA"] == pytest.approx(1.75 / 3)
    # instances: {0,2} vs {0} -> acc 1/2 prec 1 rec 1/2; {2} vs {0,2} -> 1/2, 1/2, 1; {0,1} vs {0} -> 1/2, 1, 1/2
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx(2.5 / 3)
    assert out["recall"] == pytest.approx(2 / 3)
    p, r = 2.5 / 3, 2 / 3
    assert out["F1"] == pytest.approx(2 * p * r / (p + r))


def test_empty_sets_contribute_zero():
    gt = np.array([[0, 0], [1, 0]])
    sc = np.array([[0.1, 0.2], [0.9, 0.1]])
    out = attribute_metrics(gt, sc)
    # attribute 1 has no positive: TP/P counts 0, so its mA is (0 + 1)/2, not 1
    assert out["mA_per_attr"] == pytest.approx([1.0, 0.5])
    # instance 0 has no true and no predicted attribute: 0 for acc/prec/rec
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(6))
def test_random_equals_reference(seed):
    rng = np.random.default_rng(seed)
    n, a = int(rng.integers(1, 40)), int(rng.integers(1, 30))
    gt = (rng.uniform(size=(n, a)) < rng.uniform(0.05, 0.6)).astype(np.uint8)
    sc = np.clip(gt * 0.3 + rng.uniform(size=(n, a)) * 0.7, 0, 1)
    out = attribute_metrics(gt, sc, threshold=0.45)
    ref = reference(gt, sc, 0.45)
    for k, v in ref.items():
        assert out[k] == pytest.approx(v, abs=1e-12), k


def test_errors():
    with pytest.raises(ValueError, match="both be"):
        attribute_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="0 or 1"):
        attribute_metrics(np.array([[2, 0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="NaN"):
        attribute_metrics(np.zeros((1, 2)), np.array([[np.nan, 0]]))
