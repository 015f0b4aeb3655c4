"""CMC/mAP/mINP against a brute-force per-query reference and, when importable, torchreid."""

from __future__ import annotations

import numpy as np
import pytest

from hcbench.metrics.reid import evaluate_reid


def distances(qf, gf, metric):
    if metric == "cosine":
        a = qf / np.linalg.norm(qf, axis=1, keepdims=True)
        b = gf / np.linalg.norm(gf, axis=1, keepdims=True)
        return 1 - a @ b.T
    return (qf ** 2).sum(1)[:, None] + (gf ** 2).sum(1)[None] - 2 * qf @ gf.T


def brute_force(qf, gf, qp, gp, qc, gc, metric="cosine", max_rank=50, dist=None):
    """One query at a time: drop junk and same pid+camera, sort, read off ranks of true matches.
    Equal distances keep gallery order (a stable sort: the documented tie rule)."""
    dist = distances(qf, gf, metric) if dist is None else dist
    aps, inps, firsts = [], [], []
    for i in range(len(qf)):
        keep = (gp != -1) & ~((gp == qp[i]) & (gc == qc[i]))
        d, m = dist[i, keep], gp[keep] == qp[i]
        if not m.any():
            continue
        order = np.argsort(d, kind="stable")
        ranks = np.flatnonzero(m[order]) + 1
        aps.append(np.mean(np.arange(1, len(ranks) + 1) / ranks))
        inps.append(len(ranks) / ranks[-1])
        firsts.append(ranks[0])
    firsts = np.array(firsts)
    return {"mAP": np.mean(aps), "mINP": np.mean(inps), "n": len(aps),
            "cmc": [(firsts <= k).mean() for k in range(1, max_rank + 1)]}


def random_case(seed, nq=40, ng=300, dim=12, ids=25, cams=4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids + 10, dim))
    gp = rng.integers(0, ids, ng)
    qp = rng.integers(0, ids + 5, nq)  # pids >= ids never appear in the gallery: no match
    gp[rng.uniform(size=ng) < 0.08] = -1  # junk
    gf = centres[np.maximum(gp, 0)] + rng.normal(scale=1.2, size=(ng, dim))
    qf = centres[qp] + rng.normal(scale=1.2, size=(nq, dim))
    return qf, gf, qp, gp, rng.integers(0, cams, nq), rng.integers(0, cams, ng)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", range(4))
def test_equals_brute_force(seed, metric):
    qf, gf, qp, gp, qc, gc = random_case(seed)
    ref = brute_force(qf, gf, qp, gp, qc, gc, metric)
    assert 0 < ref["n"] < len(qf)  # some queries are skipped
    for chunk in (1, 3, 1000):
        out = evaluate_reid(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=chunk)
        assert out["num_valid_queries"] == ref["n"]
        assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
        assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
        np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-12)
        assert (out["rank1"], out["rank5"], out["rank10"]) == pytest.approx(
            (ref["cmc"][0], ref["cmc"][4], ref["cmc"][9]), abs=1e-12)
    # float32 features: same numbers up to float32 distance rounding
    out32 = evaluate_reid(qf.astype(np.float32), gf.astype(np.float32), qp, gp, qc, gc, metric=metric)
    assert out32["mAP"] == pytest.approx(ref["mAP"], abs=1e-6)


def test_hand_worked_and_tie_rule():
    # 1-D features, euclidean: gallery distances from the query at 0 are |x|^2
    gf = np.array([[1.0], [2.0], [3.0], [4.0], [2.0], [0.5]])
    gp = np.array([7, 1, 7, 7, 7, -1])
    gc = np.array([1, 1, 1, 0, 0, 1])
    qf, qp, qc = np.array([[0.0]]), np.array([7]), np.array([0])
    out = evaluate_reid(qf, gf, qp, gp, qc, gc, metric="euclidean", max_rank=5)
    # junk (0.5) dropped, same pid+cam (4.0, 2.0 of cam 0) dropped; ranked: 1.0 (match), 2.0 (pid 1),
    # 3.0 (match) -> ranks 1 and 3: AP = (1/1 + 2/3)/2, mINP = 2/3
    assert out["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["mINP"] == pytest.approx(2 / 3)
    assert out["cmc"] == [1.0] * 5
    # exactly tied distances keep gallery order: the lower gallery index ranks first
    gf2 = np.array([[2.0], [2.0]])
    out = evaluate_reid(qf, gf2, qp, np.array([7, 1]), qc, np.array([1, 1]), metric="euclidean")
    assert out["rank1"] == 1.0 and out["mAP"] == 1.0
    out = evaluate_reid(qf, gf2, qp, np.array([1, 7]), qc, np.array([1, 1]), metric="euclidean")
    assert out["rank1"] == 0.0 and out["mAP"] == pytest.approx(0.5)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", range(4))
def test_ties_take_gallery_order(seed, metric):
    # few distinct features: many exact ties between matches and non-matches
    rng = np.random.default_rng(seed)
    qf, gf, qp, gp, qc, gc = random_case(seed, nq=50, ng=400, ids=6, cams=3)
    # features whose distances every implementation computes exactly: small integers
    # (euclidean) or scaled signed axis vectors (cosine distances 0, 1 or 2)
    if metric == "euclidean":
        palette = rng.integers(-2, 3, size=(5, 12)).astype(np.float32)
    else:
        palette = np.zeros((5, 12), np.float32)
        palette[np.arange(5), rng.integers(0, 3, 5)] = rng.choice([-4.0, -1.0, 2.0, 8.0], 5)
    gf = palette[rng.integers(0, 5, len(gf))]
    qf = palette[rng.integers(0, 5, len(qf))]
    keep = gp != -1
    # the reference ranks the very distances the metric computes (float32, chunked alike)
    for chunk in (1, 7, 1000):
        out = evaluate_reid(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=chunk)
        ref = brute_force(qf, gf, qp, gp, qc, gc, metric, dist=distances(qf, gf, metric))
        assert out["num_valid_queries"] == ref["n"]
        assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
        assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
        np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-12)
    assert keep.sum() < len(gp)  # junk present, dropped without changing the order of the rest


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_float32_key_path_equals_general_path(metric, monkeypatch):
    import hcbench.metrics.reid as reid

    qf, gf, qp, gp, qc, gc = random_case(11, nq=80, ng=500)
    qf, gf = qf.astype(np.float32), gf.astype(np.float32)
    fast = evaluate_reid(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=16)
    monkeypatch.setattr(reid, "_KEY_LIMIT", 0)  # every chunk through the two-stable-sorts path
    general = evaluate_reid(qf, gf, qp, gp, qc, gc, metric=metric, chunk_size=16)
    assert fast == general


def test_errors():
    qf, gf, qp, gp, qc, gc = random_case(0)
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate_reid(qf, gf, qp + 1000, gp, qc, gc)
    with pytest.raises(ValueError, match="query dim"):
        evaluate_reid(qf[:, :5], gf, qp, gp, qc, gc)
    with pytest.raises(ValueError, match="gallery pids must have shape"):
        evaluate_reid(qf, gf, qp, gp[:-1], qc, gc)
    bad = gf.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in gallery"):
        evaluate_reid(qf, bad, qp, gp, qc, gc)


def _torchreid_eval():
    pytest.importorskip("torchreid")
    for mod in ("torchreid.metrics.rank", "torchreid.reid.metrics.rank"):
        try:
            return __import__(mod, fromlist=["eval_market1501"]).eval_market1501
        except ImportError:
            continue
    pytest.skip("torchreid importable but its rank module was not found")


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_equals_torchreid(metric):
    eval_market1501 = _torchreid_eval()
    qf, gf, qp, gp, qc, gc = random_case(7, nq=60, ng=400)
    keep = gp != -1  # torchreid's readers drop junk before evaluation
    cmc, mAP = eval_market1501(distances(qf, gf[keep], metric), qp, gp[keep], qc, gc[keep], 50)
    out = evaluate_reid(qf, gf, qp, gp, qc, gc, metric=metric)
    assert out["mAP"] == pytest.approx(mAP, abs=1e-9)
    np.testing.assert_allclose(out["cmc"], cmc, atol=1e-6)  # torchreid keeps CMC in float32
