"""Person re-identification ranking metrics (CMC, mAP, mINP) under the Market-1501 protocol.

Protocol (torchreid ``eval_market1501``, Zheng et al.): for each query, gallery entries with the
same identity *and* the same camera are removed; gallery entries with pid -1 (junk) are removed for
every query; CMC rank-k is the fraction of queries with a true match in the top k of what remains,
AP is the average precision over that ranked list, and queries without any remaining true match
are skipped. mINP (Ye et al., AGW) is the mean over queries of (number of true matches) / (rank of
the hardest true match).

Ties: gallery entries at exactly the same distance take a stable order by gallery index (the
lower index ranks first), as the original Market-1501 evaluation's stable MATLAB ``sort`` does.
torchreid's ``np.argsort`` (quicksort) breaks such ties arbitrarily; without exact ties the
numbers are identical.

Speed and memory: nothing of size queries x gallery is ever held. Queries are processed in chunks
of ``chunk_size``; for each chunk only its distance block and the entries that can precede some
true match (distance up to that query's hardest true match) are alive. Instead of sorting the
whole gallery per query (what dominates torchreid's time, with its per-element Python loop),
only those candidates are ordered, by (distance, gallery index), and the rank of every true
match is its position among them. The result is the same as a full stable sort.
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
    Exactly tied distances rank in gallery order (a stable sort, as the original Market-1501 code).
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

    # gallery indices grouped by pid, to gather each query's true matches without a full scan
    g_order = np.argsort(g_pids_a, kind="stable")
    uniq, starts, counts = np.unique(g_pids_a[g_order], return_index=True, return_counts=True)

    first_ranks: list[torch.Tensor] = []
    ap_sum = inp_sum = 0.0
    n_valid = 0
    for s in range(0, nq, chunk_size):
        e = min(s + chunk_size, nq)
        qp, qc = q_pids_a[s:e], q_cams_a[s:e]
        # true matches of each query (same pid, other camera) and the entries of its own pid and
        # camera (not ranked at all), both in gallery-index order
        pos_lists, excl_lists = [], []
        for pid, cam in zip(qp, qc, strict=True):
            j = np.searchsorted(uniq, pid)
            if j < len(uniq) and uniq[j] == pid:
                idx = g_order[starts[j]:starts[j] + counts[j]]
                other = g_cams_a[idx] != cam
                pos_lists.append(idx[other])
                excl_lists.append(idx[~other])
            else:
                pos_lists.append(_NO_INDEX)
                excl_lists.append(_NO_INDEX)
        n_pos = np.array([len(p) for p in pos_lists])
        rows = np.flatnonzero(n_pos > 0)
        if rows.size == 0:
            continue
        pos_idx = np.concatenate([pos_lists[r] for r in rows])
        pos_row = np.repeat(np.arange(rows.size), n_pos[rows])
        n_excl = np.array([len(excl_lists[r]) for r in rows])
        excl_idx = np.concatenate([excl_lists[r] for r in rows])
        excl_row = np.repeat(np.arange(rows.size), n_excl)

        q = qf_t[s:e][torch.from_numpy(rows)].to(dev, dtype)
        fast = dev.type == "cpu" and dtype == torch.float32 and rows.size * len(g_pids_a) < _KEY_LIMIT
        if metric == "cosine":
            sim = F.normalize(q, p=2, dim=1) @ gal.T
            if fast:  # ranked as 1 - similarity without writing that matrix (see _ranks_cpu)
                p_rank = torch.from_numpy(_ranks_cpu(sim.numpy(), pos_row, pos_idx, excl_row, excl_idx,
                                                     similarity=True))
            else:
                dist = sim.neg_().add_(1.0)  # 1 - similarity, in place
        else:
            dist = torch.addmm(q.pow(2).sum(1, keepdim=True) + g_sq, q, gal.T, beta=1, alpha=-2)
            if fast:
                p_rank = torch.from_numpy(_ranks_cpu(dist.numpy(), pos_row, pos_idx, excl_row, excl_idx,
                                                     similarity=False))
        if not fast:
            p_rank = _true_match_ranks(dist, torch.from_numpy(pos_row).to(dev), torch.from_numpy(pos_idx).to(dev),
                                       torch.from_numpy(excl_row).to(dev), torch.from_numpy(excl_idx).to(dev))
        dist = sim = None
        p_row = torch.from_numpy(pos_row).to(dev)
        n_pos_t = torch.from_numpy(n_pos[rows]).to(dev)
        p_start = torch.cumsum(n_pos_t, 0) - n_pos_t
        i = torch.arange(len(p_rank), device=dev) - p_start[p_row]  # 0-based index among true matches
        ap = torch.zeros(rows.size, dtype=torch.float64, device=dev)
        ap.index_add_(0, p_row, (i + 1) / p_rank)
        ap_sum += float((ap / n_pos_t).sum())
        inp_sum += float((n_pos_t / p_rank[p_start + n_pos_t - 1]).sum())
        first_ranks.append(p_rank[p_start].to(torch.int64).cpu())
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


def _ranks_cpu(mat: np.ndarray, pos_row: np.ndarray, pos_idx: np.ndarray, excl_row: np.ndarray,
               excl_idx: np.ndarray, *, similarity: bool) -> np.ndarray:
    """:func:`_true_match_ranks` for a float32 block on the CPU, in numpy: one int64 key per
    candidate ordered as (row, distance, gallery index) -- the float's bits made monotone, so a
    plain (SIMD) sort of the unique keys gives the stable order. With ``similarity=True`` ``mat``
    holds similarities and the distance is ``1 - s`` in float32, computed on the candidates only
    (the same rounding as on the whole matrix). ``mat`` is modified."""
    n_rows, n_gal = mat.shape
    one = np.float32(1.0)
    if similarity:
        mat[excl_row, excl_idx] = -np.inf  # their own pid and camera: never ranked
        pos_d = one - mat[pos_row, pos_idx]
    else:
        mat[excl_row, excl_idx] = np.inf
        pos_d = mat[pos_row, pos_idx]
    hardest = np.full(n_rows, -np.inf, dtype=np.float32)
    np.maximum.at(hardest, pos_row, pos_d)
    # candidates: every entry that can precede a true match. For similarities, fl(1 - s) <= h
    # implies s >= 1 - h - 2^-23; a slightly wider cut, then the exact test on the few left
    if similarity:
        cut = (1.0 - hardest.astype(np.float64) - 1e-6).astype(np.float32)
        flat = np.flatnonzero(mat >= cut[:, None])
        d = one - mat.ravel()[flat]
    else:
        flat = np.flatnonzero(mat <= hardest[:, None])
        d = mat.ravel()[flat]
    row = flat // n_gal
    if similarity:
        ok = d <= hardest[row]
        flat, d, row = flat[ok], d[ok], row[ok]
    key = _keys_np(row, d, flat - row * n_gal, n_gal)
    pos_key = np.sort(_keys_np(pos_row, pos_d, pos_idx, n_gal))
    sorted_keys = np.sort(key)
    at = np.searchsorted(sorted_keys, pos_key)
    first = np.searchsorted(sorted_keys, np.arange(n_rows, dtype=np.int64) * (_ROW_SHIFT * n_gal))
    return (at - first[pos_key // (_ROW_SHIFT * n_gal)] + 1).astype(np.float64)


def _keys_np(row: np.ndarray, d: np.ndarray, col: np.ndarray, n_gal: int) -> np.ndarray:
    key = (d + np.float32(0.0)).view(np.int32).astype(np.int64)  # + 0.0: -0.0 becomes +0.0 (equal)
    neg = key < 0
    if neg.any():
        key[neg] ^= 0x7FFFFFFF
    key += 2 ** 31  # the floats' order, in [0, 2^32)
    key += row.astype(np.int64) * _ROW_SHIFT
    key *= n_gal
    key += col
    return key


def _true_match_ranks(dist: torch.Tensor, pos_row: torch.Tensor, pos_idx: torch.Tensor,
                      excl_row: torch.Tensor, excl_idx: torch.Tensor) -> torch.Tensor:
    """1-based rank of every true match among the ranked gallery entries of its query, ordering by
    (distance, gallery index); returned grouped by row and in rank order within a row. Any dtype
    and device: two stable sorts of the candidates.

    ``dist`` (R, G) is modified: entries of the query's own pid and camera are set to +inf."""
    n_rows, n_gal = dist.shape
    dev = dist.device
    dist[excl_row, excl_idx] = float("inf")  # they precede nothing: out of the candidates below
    pos_d = dist[pos_row, pos_idx]
    hardest = torch.full((n_rows,), -float("inf"), dtype=dist.dtype, device=dev)
    hardest.scatter_reduce_(0, pos_row, pos_d, reduce="amax")
    # candidates: every entry that can precede a true match (row-major: gallery order in a row)
    r_i, c_i = torch.nonzero(dist <= hardest.unsqueeze(1), as_tuple=True)
    vals = dist[r_i, c_i]
    o = torch.sort(vals, stable=True).indices
    o = o[torch.sort(r_i[o], stable=True).indices]
    r_sorted, c_sorted = r_i[o], c_i[o]
    counts = torch.bincount(r_sorted, minlength=n_rows)
    row_start = torch.cumsum(counts, 0) - counts
    is_pos = torch.zeros((n_rows, n_gal), dtype=torch.bool, device=dev)
    is_pos[pos_row, pos_idx] = True
    pos_sorted = is_pos[r_sorted, c_sorted]
    rank = torch.arange(len(o), device=dev) - row_start[r_sorted] + 1
    return rank[pos_sorted].to(torch.float64)


_ROW_SHIFT = 2 ** 32
_KEY_LIMIT = 2 ** 31  # rows x gallery below this: (row, distance bits, index) packs into an int64
