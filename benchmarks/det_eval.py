"""CrowdHuman evaluation (AP, MR-2, JI) at val scale: wall time and peak memory of ``crowdhuman_eval``
at 500 and 4,370 images (the growth between them), against the per-detection loop hcbench used
before (``tests/metrics/det_reference.py``) on the same data, with the numbers checked equal.

    python benchmarks/det_eval.py                   # 500 and 4,370 images; reference at 500
    python benchmarks/det_eval.py --full-reference  # the reference at 4,370 images too (slow)
    python benchmarks/det_eval.py --tiny            # seconds; what CI runs

Images look like CrowdHuman val: ~23 full-body persons per image (many overlapping), a few ignore
regions, image sizes known (boxes clipped), and a detector's 300 outputs per image: 1-4 jittered
boxes per person at high scores, boxes on ignore regions, and a long tail of false positives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests" / "metrics"))

from det_reference import crowdhuman_eval_reference  # noqa: E402
from reid_eval import measure  # noqa: E402

from hcbench.metrics.detection import crowdhuman_eval  # noqa: E402


def make_scene(images: int, seed: int, max_det: int = 300) -> tuple[list[dict], dict]:
    rng = np.random.default_rng(seed)
    gts, dets = [], {}
    for i in range(images):
        w_img, h_img = 1000, 750
        n = int(min(rng.gamma(1.5, 15.0), 150))
        centre = rng.uniform([0, 0], [w_img, h_img])
        xy = centre + rng.normal(0, 180, (n, 2))
        h = rng.uniform(40, 400, n)
        boxes = np.c_[xy, h * rng.uniform(0.35, 0.5, n), h]
        n_ign = int(rng.poisson(2))
        ign = np.c_[rng.uniform(0, [w_img, h_img], (n_ign, 2)), rng.uniform(20, 200, (n_ign, 2))]
        gts.append({"image_id": i, "boxes": boxes, "ignore": ign, "width": w_img, "height": h_img})
        rows = []
        for b in boxes:
            k = int(rng.integers(1, 5))
            jit = b + rng.normal(0, 0.06, (k, 4)) * b[[2, 3, 2, 3]]
            rows.append(np.c_[jit, rng.uniform(0.3, 1.0, k)])
        for b in ign:
            rows.append(np.c_[b[None, :2] + 3, b[None, 2:] * 0.8, rng.uniform(0.1, 0.9, 1)])
        n_fp = max(0, max_det - sum(len(r) for r in rows))
        fp_h = rng.uniform(30, 300, n_fp)
        rows.append(np.c_[rng.uniform(0, [w_img, h_img], (n_fp, 2)), fp_h * 0.4, fp_h, rng.beta(1, 30, n_fp)])
        d = np.concatenate(rows)
        dets[i] = d[np.argsort(-d[:, 4], kind="stable")][:max_det]
    return gts, dets


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="20 and 60 images, 100 detections each")
    ap.add_argument("--images", type=int, nargs=2, default=(500, 4_370), metavar=("SMALL", "FULL"))
    ap.add_argument("--full-reference", action="store_true", help="also run the reference loop at full scale")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    max_det = 300
    if args.tiny:
        args.images, max_det = (20, 60), 100
    small, full = args.images
    gts, dets = make_scene(full, args.seed, max_det)
    n_gt = sum(len(g["boxes"]) for g in gts)
    print(f"CrowdHuman evaluation: {full:,} images, {n_gt:,} persons, "
          f"{sum(len(d) for d in dets.values()):,} detections (<= {max_det} per image)")
    crowdhuman_eval(gts[:2], {k: dets[k] for k in range(2)})  # imports (scipy) out of the timing
    runs = {}
    for n in (small, full):
        sub_g, sub_d = gts[:n], {k: dets[k] for k in range(n)}
        out, wall, mem = measure(lambda sub_g=sub_g, sub_d=sub_d: crowdhuman_eval(sub_g, sub_d))
        runs[n] = (out, wall, mem)
        print(f"hcbench  {n:5,} images: {wall:7.2f} s  peak +{mem / 2**20:7.1f} MiB  "
              f"AP {out['AP']:.4f}  MR-2 {out['MR-2']:.4f}  JI {out['JI']:.4f}")
    (_, t0, m0), (_, t1, m1) = runs[small], runs[full]
    print(f"growth {small:,} -> {full:,} images ({full / small:.2f}x): time {t1 / t0:.2f}x  "
          f"memory {m1 / max(m0, 1):.2f}x")
    ok = True
    for n in (small, full) if args.full_reference or args.tiny else (small,):
        sub_g, sub_d = gts[:n], {k: dets[k] for k in range(n)}
        ref, rwall, rmem = measure(lambda sub_g=sub_g, sub_d=sub_d: crowdhuman_eval_reference(sub_g, sub_d))
        same = ref == runs[n][0]
        ok &= same
        print(f"reference loop {n:5,} images: {rwall:7.2f} s  peak +{rmem / 2**20:7.1f} MiB  "
              f"ratio reference/hcbench {rwall / runs[n][1]:5.2f}x  numbers {'identical' if same else 'DIFFER'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
