"""Text-to-image retrieval metrics against a brute-force reference: a full stable sort of every
caption's similarity row and the definitions of CMC, AP and INP written out (IRRA's ``rank``),
including exact ties, and the rejection of a caption without a matching image."""

from __future__ import annotations

import numpy as np
import pytest

from hcbench.metrics.t2i import UnmatchedCaptionError, evaluate_t2i


def brute_force(tf: np.ndarray, gf: np.ndarray, tp: np.ndarray, gp: np.ndarray) -> dict[str, float]:
    tf = tf / np.linalg.norm(tf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    sim = tf.astype(np.float64) @ gf.astype(np.float64).T
    r1 = r5 = r10 = ap = inp = 0.0
    for i in range(len(tp)):
        order = np.argsort(-sim[i], kind="stable")  # ties: gallery order
        match = gp[order] == tp[i]
        hits = np.flatnonzero(match) + 1  # 1-based ranks of the true matches
        r1 += hits[0] <= 1
        r5 += hits[0] <= 5
        r10 += hits[0] <= 10
        ap += np.mean(np.arange(1, len(hits) + 1) / hits)
        inp += len(hits) / hits[-1]
    n = len(tp)
    return {"rank1": r1 / n, "rank5": r5 / n, "rank10": r10 / n, "mAP": ap / n, "mINP": inp / n}


def _check(tf, gf, tp, gp, **kw) -> dict:
    got = evaluate_t2i(tf, gf, tp, gp, **kw)
    want = brute_force(np.asarray(tf, float), np.asarray(gf, float), np.asarray(tp), np.asarray(gp))
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-9), k
    return got


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_features_equal_brute_force(seed: int):
    rng = np.random.default_rng(seed)
    n_ids, dim = 25, 16
    gp = np.repeat(np.arange(n_ids), rng.integers(1, 5, n_ids)) + 100
    centres = rng.normal(size=(n_ids, dim))
    gf = centres[gp - 100] + rng.normal(scale=1.2, size=(len(gp), dim))
    tp = np.repeat(np.unique(gp), 2)
    tf = centres[tp - 100] + rng.normal(scale=1.2, size=(len(tp), dim))
    got = _check(tf.astype(np.float32), gf.astype(np.float32), tp, gp, chunk_size=7)
    assert got["num_queries"] == len(tp)
    assert 0 < got["rank1"] < 1 and got["rank1"] <= got["rank5"] <= got["rank10"]
    assert got["cmc"][0] == got["rank1"] and len(got["cmc"]) == 10


def test_exact_ties_take_gallery_order():
    # integer features: every similarity is exact, and many are equal
    rng = np.random.default_rng(5)
    gf = rng.integers(0, 2, size=(40, 3)).astype(np.float64) + np.array([1.0, 0.0, 0.0])
    gp = rng.integers(0, 6, 40)
    tp = np.array(sorted(set(gp.tolist())) * 3)
    tf = rng.integers(0, 2, size=(len(tp), 3)).astype(np.float64) + np.array([0.0, 1.0, 0.0])
    _check(tf, gf, tp, gp, chunk_size=4)


def test_hand_computed_ties():
    # one caption of identity 7; four images with the same similarity: 1, 7, 2, 7 -> stable order
    # puts the matches at ranks 2 and 4
    gf = np.ones((4, 2))
    got = evaluate_t2i(np.ones((1, 2)), gf, [7], [1, 7, 2, 7])
    assert got["rank1"] == 0.0 and got["rank5"] == 1.0
    assert got["mAP"] == pytest.approx((1 / 2 + 2 / 4) / 2, abs=1e-12)
    assert got["mINP"] == pytest.approx(2 / 4, abs=1e-12)


def test_perfect_and_hand_ranking():
    gf = np.eye(3)
    got = evaluate_t2i(np.eye(3), gf, [0, 1, 2], [0, 1, 2])
    assert got["rank1"] == got["mAP"] == got["mINP"] == 1.0
    # caption of id 0 closest to image 1 (id 1), then image 0 (id 0)
    t = np.array([[0.5, 1.0, 0.0]])
    got = evaluate_t2i(t, gf, [0], [0, 1, 2])
    assert got["rank1"] == 0.0 and got["mAP"] == pytest.approx(0.5) and got["mINP"] == pytest.approx(0.5)


def test_caption_without_matching_image_is_rejected():
    with pytest.raises(UnmatchedCaptionError, match=r"caption 1 \(identity 9\) has no matching image"):
        evaluate_t2i(np.ones((2, 2)), np.ones((3, 2)), [1, 9], [1, 2, 3])


def test_bad_inputs():
    with pytest.raises(ValueError, match="dim"):
        evaluate_t2i(np.ones((2, 3)), np.ones((2, 2)), [0, 1], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_t2i(np.array([[np.nan, 1.0]]), np.ones((1, 2)), [0], [0])
    with pytest.raises(ValueError, match="shape"):
        evaluate_t2i(np.ones((2, 2)), np.ones((2, 2)), [0], [0, 1])
    with pytest.raises(ValueError, match="all zeros"):
        evaluate_t2i(np.zeros((1, 2)), np.ones((1, 2)), [0], [0])
