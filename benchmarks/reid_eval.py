"""ReID evaluation at MSMT17 scale: wall time and peak memory of ``evaluate_reid``, and of torchreid's
``evaluate_rank`` on the same distances when torchreid is importable, with the ratio.

    python benchmarks/reid_eval.py            # 11,659 queries x 82,161 gallery, 768-d float32
    python benchmarks/reid_eval.py --tiny     # seconds; what the test runs

Features are random but identity-structured (a per-identity centre plus noise), with MSMT17's test
split sizes (3,060 identities, 15 cameras), so every query has true matches and the ranking work is
realistic. Memory is the peak resident set size sampled every few milliseconds while the
evaluation runs, minus the resident size just before it (the inputs are already allocated then).
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


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def measure(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """(result, wall seconds, peak RSS increase in bytes) of ``fn()``."""
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        wall = time.perf_counter() - t0
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


def _torchreid_rank():
    for mod in ("torchreid.metrics.rank", "torchreid.reid.metrics.rank"):
        try:
            return __import__(mod, fromlist=["evaluate_rank"]).evaluate_rank
        except ImportError:
            continue
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="200 x 1,000 x 64: a quick check")
    ap.add_argument("--queries", type=int, default=11_659)
    ap.add_argument("--gallery", type=int, default=82_161)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--metric", choices=["cosine", "euclidean"], default="cosine")
    ap.add_argument("--no-peer", action="store_true", help="skip torchreid even if importable")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.tiny:
        args.queries, args.gallery, args.dim = 200, 1_000, 64
    ids = max(2, min(3_060, args.gallery // 10))

    d = make_data(args.queries, args.gallery, args.dim, ids, 15, args.seed)
    print(f"ReID evaluation: {args.queries:,} queries x {args.gallery:,} gallery, dim {args.dim}, "
          f"{args.metric}, {torch.get_num_threads()} torch threads")

    ours, wall, mem = measure(lambda: evaluate_reid(
        d["qf"], d["gf"], d["q_pids"], d["g_pids"], d["q_camids"], d["g_camids"],
        metric=args.metric, chunk_size=args.chunk_size))
    print(f"hcbench evaluate_reid : {wall:8.2f} s  peak +{mem / 2**30:6.3f} GiB  "
          f"mAP {ours['mAP']:.4f}  R1 {ours['rank1']:.4f}  mINP {ours['mINP']:.4f}")
    print(f"process peak RSS (ru_maxrss): {_maxrss_gib():.3f} GiB")

    evaluate_rank = None if args.no_peer else _torchreid_rank()
    if evaluate_rank is None:
        print("torchreid: not importable (or --no-peer); no peer measurement")
        return 0

    def peer():
        q = torch.from_numpy(d["qf"])
        g = torch.from_numpy(d["gf"])
        if args.metric == "cosine":  # torchreid compute_distance_matrix, same formulas
            dist = 1 - torch.nn.functional.normalize(q) @ torch.nn.functional.normalize(g).T
        else:
            dist = (q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1)).addmm_(q, g.T, beta=1, alpha=-2)
        return evaluate_rank(dist.numpy(), d["q_pids"], d["g_pids"], d["q_camids"], d["g_camids"],
                             max_rank=50, use_metric_cuhk03=False)

    (cmc, mAP), pwall, pmem = measure(peer)
    print(f"torchreid evaluate_rank: {pwall:8.2f} s  peak +{pmem / 2**30:6.3f} GiB  mAP {mAP:.4f}  "
          f"R1 {cmc[0]:.4f}  (distance matrix included)")
    print(f"ratio torchreid/hcbench: time {pwall / wall:.2f}x  memory {pmem / max(mem, 1):.2f}x  "
          f"|dmAP| {abs(mAP - ours['mAP']):.2e}  |dR1| {abs(cmc[0] - ours['rank1']):.2e}")
    return 0


def _maxrss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


if __name__ == "__main__":
    sys.exit(main())
