"""Person re-identification ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol.

Protocol (torchreid ``eval_market1501``, Zheng et al.): for each query, gallery entries with the
same identity *and* the same camera are removed; gallery entries with pid -1 (junk) are removed for
every query; CMC rank-k is the fraction of queries with a true match in the top k of what remains,
AP is the average precision over that ranked list, and queries without any remaining true match
are skipped. mINP (Ye et al., AGW) is the mean over queries of (number of true matches) / (rank of
the hardest true match).

Memory: nothing of size queries x gallery is ever held. Queries are processed in chunks; for each
chunk only its distance block, plus one integer per gallery entry, is alive. Instead of sorting the
whole gallery, the rank of every true match is counted: the chunk's true-match distances are sorted
(a handful per query), each gallery distance is placed among them with ``searchsorted``, and a
per-query histogram of the non-matching entries gives how many of them precede each true match.
This gives the same ranks as a full argsort (ties aside) at a fraction of the cost.

Ties: a non-matching gallery entry at exactly the same distance as a true match is ranked before
it (the pessimistic choice), so the result never depends on gallery order. torchreid's
``np.argsort`` breaks such ties arbitrarily; without exact ties the numbers are identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

_NO_INDEX = np.zeros(0, dtype=np.int64)


def _features(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num, dim), got shape {tuple(t.shape)}")
    if not torch.is_floating_point(t):
        t = t.float()
    # a row sum is finite iff the row is (short of float overflow) and costs no N x D bool tensor
    if not bool(torch.isfinite(t.sum(1, dtype=torch.float64)).all()):
        raise ValueError(f"NaN or inf in {name}")
    return t


def _ids(x: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integers")
    return a.astype(np.int64)


def evaluate_reid(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, *,
                  metric: str = "cosine", max_rank: int = 50, chunk_size: int = 256,
                  device: str | torch.device | None = None) -> dict[str, Any]:
    """mAP, rank1/5/10, mINP (fractions) and ``cmc`` (list of ``max_rank`` fractions).

    ``qf`` (Q, D) and ``gf`` (G, D) are features (numpy or torch; float32 stays float32),
    ``metric`` is ``"cosine"`` (1 - cosine similarity) or ``"euclidean"`` (squared, as torchreid).
    Also returned: ``num_valid_queries``. Raises ``ValueError`` when no query has a true match.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    if max_rank < 1 or chunk_size < 1:
        raise ValueError("max_rank and chunk_size must be positive")
    qf_t = _features(qf, "query features")
    gf_t = _features(gf, "gallery features")
    if qf_t.shape[1] != gf_t.shape[1]:
        raise ValueError(f"query dim {qf_t.shape[1]} != gallery dim {gf_t.shape[1]}")
    nq, ng = qf_t.shape[0], gf_t.shape[0]
    q_pids_a, q_cams_a = _ids(q_pids, nq, "query pids"), _ids(q_camids, nq, "query camids")
    g_pids_a, g_cams_a = _ids(g_pids, ng, "gallery pids"), _ids(g_camids, ng, "gallery camids")
    dev = torch.device(device) if device is not None else gf_t.device
    dtype = torch.promote_types(qf_t.dtype, gf_t.dtype)

    # junk never counts: drop it once, for every query
    keep = g_pids_a != -1
    if not keep.all():
        gf_t = gf_t[torch.from_numpy(keep)]
        g_pids_a, g_cams_a = g_pids_a[keep], g_cams_a[keep]
    gal = gf_t.to(dev, dtype)
    if metric == "cosine":
        gal = F.normalize(gal, p=2, dim=1)
    else:
        g_sq = gal.pow(2).sum(1)
    g_pids_t = torch.from_numpy(g_pids_a).to(dev)

    # gallery indices grouped by pid, to gather each query's true matches without a full scan
    g_order = np.argsort(g_pids_a, kind="stable")
    uniq, starts, counts = np.unique(g_pids_a[g_order], return_index=True, return_counts=True)

    first_ranks: list[torch.Tensor] = []
    ap_sum = inp_sum = 0.0
    n_valid = 0
    for s in range(0, nq, chunk_size):
        e = min(s + chunk_size, nq)
        qp, qc = q_pids_a[s:e], q_cams_a[s:e]
        # true matches of each query: same pid, other camera
        pos_lists = []
        for pid, cam in zip(qp, qc, strict=True):
            j = np.searchsorted(uniq, pid)
            if j < len(uniq) and uniq[j] == pid:
                idx = g_order[starts[j]:starts[j] + counts[j]]
                idx = idx[g_cams_a[idx] != cam]
            else:
                idx = _NO_INDEX
            pos_lists.append(idx)
        n_pos = np.array([len(p) for p in pos_lists])
        rows = np.flatnonzero(n_pos > 0)
        if rows.size == 0:
            continue
        pmax = int(n_pos.max())
        pos_idx = np.zeros((rows.size, pmax), dtype=np.int64)
        pos_mask = np.zeros((rows.size, pmax), dtype=bool)
        for r, qi in enumerate(rows):
            pos_idx[r, :n_pos[qi]] = pos_lists[qi]
            pos_mask[r, :n_pos[qi]] = True

        q = qf_t[s:e][torch.from_numpy(rows)].to(dev, dtype)
        if metric == "cosine":
            dist = 1.0 - F.normalize(q, p=2, dim=1) @ gal.T
        else:
            dist = torch.addmm(q.pow(2).sum(1, keepdim=True) + g_sq, q, gal.T, beta=1, alpha=-2)
        pos_idx_t = torch.from_numpy(pos_idx).to(dev)
        pos_mask_t = torch.from_numpy(pos_mask).to(dev)
        pos_d = dist.gather(1, pos_idx_t).masked_fill(~pos_mask_t, float("inf"))
        pos_d, _ = torch.sort(pos_d, dim=1)

        # bucket of each gallery entry = number of true matches strictly closer than it; a
        # non-match in bucket <= i precedes the i-th true match (ties go against the match)
        bucket = torch.searchsorted(pos_d, dist.contiguous(), side="left")
        del dist
        not_neg = g_pids_t.unsqueeze(0) == torch.from_numpy(qp[rows]).to(dev).unsqueeze(1)
        bucket.masked_fill_(not_neg, pmax)  # true matches and same-pid-same-camera: out of the count
        del not_neg
        hist = torch.zeros(rows.size, pmax + 1, dtype=torch.int64, device=dev)
        hist.scatter_add_(1, bucket, torch.ones((), dtype=torch.int64, device=dev).expand_as(bucket))
        del bucket
        neg_before = hist[:, :pmax].cumsum(1)  # non-matches ranked before true match i
        i = torch.arange(pmax, device=dev).unsqueeze(0)
        ranks = (neg_before + i + 1).to(torch.float64)  # 1-based rank of true match i

        n_pos_t = torch.from_numpy(n_pos[rows]).to(dev)
        prec = torch.where(pos_mask_t, (i + 1) / ranks, torch.zeros((), dtype=torch.float64, device=dev))
        ap_sum += float((prec.sum(1) / n_pos_t).sum())
        hardest = ranks.gather(1, (n_pos_t - 1).unsqueeze(1)).squeeze(1)
        inp_sum += float((n_pos_t / hardest).sum())
        first_ranks.append(ranks[:, 0].to(torch.int64).cpu())
        n_valid += rows.size

    if n_valid == 0:
        raise ValueError("no query has a true match in the gallery (same pid, other camera); "
                         "check that query and gallery pids/camids come from the same split")
    r1 = torch.cat(first_ranks)
    cmc_counts = torch.bincount(r1.clamp(max=max_rank + 1), minlength=max_rank + 2)[1:max_rank + 1]
    cmc = (cmc_counts.cumsum(0).double() / n_valid).tolist()

    def rank_k(k: int) -> float:
        return float((r1 <= k).sum()) / n_valid

    return {
        "mAP": ap_sum / n_valid,
        "rank1": rank_k(1),
        "rank5": rank_k(5),
        "rank10": rank_k(10),
        "mINP": inp_sum / n_valid,
        "cmc": cmc,
        "num_valid_queries": n_valid,
    }

