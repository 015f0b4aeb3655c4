"""ReID evaluation at Market-1501 and MSMT17 scale: wall time and peak memory of ``evaluate_reid``
against torchreid's ``evaluate_rank`` on the same features, with the ratio and the numbers compared.

    python benchmarks/reid_eval.py                  # Market-1501 (3,368 x 15,913, 256-d) with the peer,
                                                    # then MSMT17 (11,659 x 82,161, 768-d) memory
    python benchmarks/reid_eval.py --scale market   # only the first part
    python benchmarks/reid_eval.py --tiny           # seconds; what CI runs

The peer is torchreid's ``evaluate_rank`` (Python path, as ``pip install torchreid`` ships it) when
importable; otherwise a faithful re-implementation of its ``eval_market1501`` loop in this file
(full ``np.argsort`` of the distance matrix, then per query: drop same pid+camera, cumulative
matches, precision at each position through a Python list, AP), and the output says so. Both sides
include the distance matrix (torchreid's ``compute_distance_matrix`` formulas).

Features are random but identity-structured (a per-identity centre plus noise), with the split
sizes of the dataset, so every query has true matches and the ranking work is realistic. Memory is
the peak resident set size sampled every few milliseconds while the evaluation runs, minus the
resident size just before it (the inputs are already allocated then).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcbench.metrics.reid import evaluate_reid  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")
LAST_CPU = 0.0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, wall seconds, peak RSS increase in bytes) of ``fn()``; its CPU seconds (all
    threads) are left in ``LAST_CPU`` (on a busy machine they say more than the wall time)."""
    global LAST_CPU
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        out = fn()
    finally:
        wall = time.perf_counter() - t0
        LAST_CPU = time.process_time() - c0
        done.set()
        t.join()
    peak[0] = max(peak[0], _rss())
    return out, wall, peak[0] - base


def make_data(nq: int, ng: int, dim: int, ids: int, cams: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((ids, dim), dtype=np.float32)
    g_pids = rng.integers(0, ids, ng)
    q_pids = rng.integers(0, ids, nq)
    noise = 1.5 * (dim / 64) ** 0.25  # a task neither trivial nor hopeless at any dim
    gf = centres[g_pids]
    gf += noise * rng.standard_normal((ng, dim), dtype=np.float32)
    qf = centres[q_pids]
    qf += noise * rng.standard_normal((nq, dim), dtype=np.float32)
    return {"qf": qf, "gf": gf, "q_pids": q_pids, "g_pids": g_pids,
            "q_camids": rng.integers(0, cams, nq), "g_camids": rng.integers(0, cams, ng)}


SCALES = {  # queries, gallery, dim, identities, cameras
    "market": (3_368, 15_913, 256, 751, 6),
    "msmt17": (11_659, 82_161, 768, 3_060, 15),
    "tiny": (200, 1_000, 64, 100, 6),
}


def _torchreid_rank():
    for mod in ("torchreid.metrics.rank", "torchreid.reid.metrics.rank"):
        try:
            fn = __import__(mod, fromlist=["evaluate_rank"]).evaluate_rank
        except Exception:  # torchreid's package import pulls in much more than the metric
            continue

        def run(distmat, q_pids, g_pids, q_camids, g_camids, fn=fn):
            return fn(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50, use_metric_cuhk03=False)
        return run, "torchreid evaluate_rank"
    return torchreid_style_rank, "torchreid-style loop (torchreid not installed: faithful re-implementation)"


def torchreid_style_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                         g_camids: np.ndarray, max_rank: int = 50, kind: str = "quicksort"
                         ) -> tuple[np.ndarray, float]:
    """torchreid's ``eval_market1501`` (its Python path), step for step: a full argsort of the
    distance matrix, then per query the same-pid-same-camera entries dropped, CMC from the
    cumulative matches and AP from the precision at every position (a Python list, as there).
    ``kind="stable"`` gives exact ties the Market-1501 order (gallery index), as hcbench does."""
    indices = np.argsort(distmat, axis=1, kind=kind)
    matches = (g_pids[indices] == q_pids[:, np.newaxis]).astype(np.int32)
    all_cmc, all_ap = [], []
    for i in range(distmat.shape[0]):
        order = indices[i]
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = matches[i][keep]
        if not np.any(raw):
            continue
        cmc = raw.cumsum()
        cmc[cmc > 1] = 1
        all_cmc.append(cmc[:max_rank])
        hits = raw.cumsum()
        precision = np.asarray([h / (k + 1.0) for k, h in enumerate(hits)]) * raw
        all_ap.append(precision.sum() / raw.sum())
    cmc_mean = np.asarray(all_cmc).astype(np.float32).sum(0) / len(all_ap)
    return cmc_mean, float(np.mean(all_ap))


def run_scale(name: str, args: argparse.Namespace, with_peer: bool) -> None:
    nq, ng, dim, ids, cams = SCALES[name]
    d = make_data(nq, ng, dim, ids, cams, args.seed)
    print(f"[{name}] {nq:,} queries x {ng:,} gallery, dim {dim}, {args.metric}, "
          f"{torch.get_num_threads()} torch threads")
    ours, wall, mem = measure(lambda: evaluate_reid(
        d["qf"], d["gf"], d["q_pids"], d["g_pids"], d["q_camids"], d["g_camids"],
        metric=args.metric, chunk_size=args.chunk_size))
    cpu = LAST_CPU
    print(f"hcbench evaluate_reid : {wall:8.2f} s (CPU {cpu:7.2f} s)  peak +{mem / 2**30:6.3f} GiB  "
          f"mAP {ours['mAP']:.4f}  R1 {ours['rank1']:.4f}  mINP {ours['mINP']:.4f}")
    if not with_peer:
        return
    peer_fn, peer_name = _torchreid_rank()

    def peer():
        q = torch.from_numpy(d["qf"])
        g = torch.from_numpy(d["gf"])
        if args.metric == "cosine":  # torchreid compute_distance_matrix, same formulas
            dist = 1 - torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(g).T
        else:
            dist = (q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1)).addmm_(q, g.T, beta=1, alpha=-2)
        return peer_fn(dist.numpy(), d["q_pids"], d["g_pids"], d["q_camids"], d["g_camids"])

    (cmc, mAP), pwall, pmem = measure(peer)
    pcpu = LAST_CPU
    print(f"{peer_name}:")
    print(f"  {pwall:8.2f} s (CPU {pcpu:7.2f} s)  peak +{pmem / 2**30:6.3f} GiB  mAP {mAP:.4f}  R1 {cmc[0]:.4f}  "
          "(distance matrix included)")
    print(f"ratio peer/hcbench: time {pwall / wall:.2f}x  CPU time {pcpu / max(cpu, 1e-9):.2f}x  "
          f"memory {pmem / max(mem, 1):.2f}x  "
          f"|dmAP| {abs(mAP - ours['mAP']):.2e}  |dR1| {abs(cmc[0] - ours['rank1']):.2e}")
    # float32 distances tie now and then at this scale, and the peer's quicksort orders ties
    # arbitrarily: the same loop with the Market-1501 tie rule (a stable sort) must agree exactly
    n = min(nq, 400)
    sub = {k: v[:n] for k, v in d.items() if k.startswith("q")}
    qn = torch.nn.functional.normalize(torch.from_numpy(sub["qf"]))
    gn = torch.nn.functional.normalize(torch.from_numpy(d["gf"]))
    dist = (1 - qn @ gn.T) if args.metric == "cosine" else \
        (torch.from_numpy(sub["qf"]).pow(2).sum(1, keepdim=True) + torch.from_numpy(d["gf"]).pow(2).sum(1)
         ).addmm_(torch.from_numpy(sub["qf"]), torch.from_numpy(d["gf"]).T, beta=1, alpha=-2)
    s_cmc, s_map = torchreid_style_rank(dist.numpy(), sub["q_pids"], d["g_pids"], sub["q_camids"], d["g_camids"],
                                        kind="stable")
    mine = evaluate_reid(sub["qf"], d["gf"], sub["q_pids"], d["g_pids"], sub["q_camids"], d["g_camids"],
                         metric=args.metric, chunk_size=args.chunk_size)
    print(f"tie-stable check on the first {n} queries: |dmAP| {abs(s_map - mine['mAP']):.1e}  "
          f"max |dCMC| {float(np.max(np.abs(np.asarray(s_cmc, float) - mine['cmc']))):.1e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="200 x 1,000 x 64: a quick check")
    ap.add_argument("--scale", choices=["market", "msmt17"], help="run one scale only")
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    ap.add_argument("--no-peer", action="store_true", help="skip the peer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.tiny:
        run_scale("tiny", args, with_peer=not args.no_peer)
    else:
        if args.scale in (None, "market"):
            run_scale("market", args, with_peer=not args.no_peer)
        if args.scale in (None, "msmt17"):  # the peer would need a 3.8 GB matrix and minutes: ours only
            run_scale("msmt17", args, with_peer=False)
    print(f"process peak RSS (ru_maxrss): {_maxrss_gib():.3f} GiB")
    return 0


def _maxrss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


if __name__ == "__main__":
    sys.exit(main())
