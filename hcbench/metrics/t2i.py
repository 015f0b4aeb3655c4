"""Text-to-image person retrieval metrics: Rank-1/5/10, mAP and mINP over all captions x all images.

Protocol (CUHK-PEDES, ICFG-PEDES, RSTPReid as IRRA ``utils/metrics.py::rank`` evaluates them):
every test caption is a query, every test image is the gallery, ranked by cosine similarity;
an image is a true match when it shows the caption's identity. There are no cameras and nothing
is filtered. Rank-k = fraction of captions with a true match in the top k; AP = mean over the
caption's true matches of (matches up to it) / (its rank); mINP = mean over captions of
(number of true matches) / (rank of the last true match).

Ties: images with exactly the same similarity keep gallery (image) order -- a stable
descending sort, as ``numpy.argsort(-sim, kind="stable")`` gives -- so the numbers never depend
on the sorting algorithm. (IRRA's ``torch.argsort`` leaves tie order unspecified; without exact
ties the numbers are identical.)

A caption whose identity has no image in the gallery cannot be scored and is an error (the
released splits have none; a mismatch means query and gallery come from different splits).

Computation: never a full sort. Captions go in chunks; for each chunk the similarity block is
computed in float64 and, for each true match ``p`` of a caption, its 0-based rank is the number
of images ranked before it: ``#{g: s_g > s_p} + #{g < p: s_g == s_p}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from hcbench.errors import UserError

METRIC_KEYS = ("rank1", "rank5", "rank10", "mAP", "mINP")


class UnmatchedCaptionError(UserError, ValueError):
    """A caption whose identity has no image in the gallery: it cannot be ranked."""


def _feats(x: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).to(torch.float64)
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num, dim), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"NaN or inf in {name}")
    norms = t.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise ValueError(f"{name}: row {int(torch.nonzero(norms[:, 0] == 0)[0])} is all zeros (no direction)")
    return t / norms


def _ids(x: Any, n: int, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        if a.dtype.kind not in "fu" or not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{name} must hold integers")
    return a.astype(np.int64)


def evaluate_t2i(text_feats: Any, image_feats: Any, text_pids: Any, image_pids: Any, *,
                 chunk_size: int = 256) -> dict[str, Any]:
    """``rank1``/``rank5``/``rank10``/``mAP``/``mINP`` (fractions), ``cmc`` (ranks 1..10) and
    ``num_queries``. Features are (T, D) caption and (G, D) image embeddings (cosine similarity,
    normalised here), pids the identities. ValueError naming the first caption without a match."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    t = _feats(text_feats, "text features")
    g = _feats(image_feats, "image features")
    if t.shape[1] != g.shape[1]:
        raise ValueError(f"text feature dim {t.shape[1]} != image feature dim {g.shape[1]}")
    nt, ng = t.shape[0], g.shape[0]
    if nt == 0 or ng == 0:
        raise ValueError(f"nothing to rank: {nt} captions, {ng} images")
    tp, gp = _ids(text_pids, nt, "text pids"), _ids(image_pids, ng, "image pids")

    order = np.argsort(gp, kind="stable")
    uniq, starts, counts = np.unique(gp[order], return_index=True, return_counts=True)
    pos = np.searchsorted(uniq, tp)
    hit = (pos < len(uniq)) & (uniq[np.minimum(pos, len(uniq) - 1)] == tp)
    if not hit.all():
        i = int(np.flatnonzero(~hit)[0])
        raise UnmatchedCaptionError(f"caption {i} (identity {int(tp[i])}) has no matching image in the gallery "
                         f"({int((~hit).sum())} such captions); text and image features must come from "
                         "the same split")
    n_pos = counts[pos]
    pmax = int(n_pos.max())
    gidx = torch.arange(ng)
    # the comparison block is chunk x matches x gallery booleans: keep it near 32 M entries
    chunk_size = max(1, min(chunk_size, (1 << 25) // max(pmax * ng, 1)))

    first = np.empty(nt, np.int64)
    ap = np.empty(nt, np.float64)
    inp = np.empty(nt, np.float64)
    for s in range(0, nt, chunk_size):
        e = min(s + chunk_size, nt)
        sim = t[s:e] @ g.T  # (c, G) float64
        c = e - s
        pidx = np.zeros((c, pmax), np.int64)
        pmask = np.zeros((c, pmax), bool)
        for r in range(c):
            k = int(n_pos[s + r])
            j = int(pos[s + r])
            pidx[r, :k] = order[starts[j]:starts[j] + k]  # ascending image index
            pmask[r, :k] = True
        pidx_t = torch.from_numpy(pidx)
        sp = sim.gather(1, pidx_t)  # (c, P) similarity of each true match
        # images ranked before match p: strictly more similar, or as similar and earlier in the gallery
        before = (sim.unsqueeze(1) > sp.unsqueeze(2)) | (
            (sim.unsqueeze(1) == sp.unsqueeze(2)) & (gidx.view(1, 1, -1) < pidx_t.unsqueeze(2)))
        rank0 = before.sum(2).numpy()  # (c, P) 0-based rank of each true match
        rank0 = np.where(pmask, rank0, np.iinfo(np.int64).max)
        rank0.sort(axis=1)
        for r in range(c):
            k = int(n_pos[s + r])
            rk = rank0[r, :k].astype(np.float64) + 1.0
            first[s + r] = int(rk[0])
            ap[s + r] = float(np.mean(np.arange(1, k + 1) / rk))
            inp[s + r] = k / rk[-1]

    cmc = [float((first <= k).mean()) for k in range(1, 11)]
    return {"rank1": cmc[0], "rank5": cmc[4], "rank10": cmc[9], "mAP": float(ap.mean()),
            "mINP": float(inp.mean()), "cmc": cmc, "num_queries": nt}
