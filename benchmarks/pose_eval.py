"""COCO keypoint AP at val2017 scale: hcbench's OKS evaluation against pycocotools and faster-coco-eval
on the same generated files, timed in one run, with the numbers checked equal.

    python benchmarks/pose_eval.py            # 5,000 images, ~10k persons, ~40k detections
    python benchmarks/pose_eval.py --tiny     # seconds; what CI runs
    python benchmarks/pose_eval.py --crowd    # the CrowdPose variant (14 keypoints, crowdIndex splits)

Ground truth mimics COCO val2017 person_keypoints: ~2 persons per image of varied size (so every
area range is populated), ~40 % of them with no labelled keypoint (ignored), a few crowd regions.
Detections: every person found 1-3 times with pixel noise plus false positives, ~8 per image.
Each side is timed from the files on disk to the ten stats (JSON parsing included on both sides:
``COCO(path)`` + ``loadRes(path)`` for pycocotools, ``keypoint_ap(path, json.load(...))`` here), and
then as whole processes: ``hcbench score pose`` against a pycocotools script, each started fresh.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcbench.metrics.pose import COCO_KEYS, CROWD_KEYS, SIGMAS, keypoint_ap  # noqa: E402


def make_files(out: Path, images: int, seed: int, crowd: bool) -> tuple[Path, Path, int, int]:
    rng = np.random.default_rng(seed)
    k = 14 if crowd else 17
    imgs, anns, res = [], [], []
    for i in range(images):
        img = {"id": int(1000 + 7 * i), "width": 640, "height": 480}
        if crowd:
            img["crowdIndex"] = float(rng.uniform(0, 1))
        imgs.append(img)
        for _ in range(int(rng.poisson(2.0))):
            w = float(rng.choice([rng.uniform(8, 40), rng.uniform(40, 110), rng.uniform(110, 400)]))
            h = w * float(rng.uniform(1.2, 2.5))
            x, y = rng.uniform(0, 640 - min(w, 600)), rng.uniform(0, 480 - min(h, 470))
            kp = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k), rng.integers(1, 3, k)]
            labelled = rng.uniform() > 0.4
            if not labelled:
                kp[:] = 0
            else:
                kp[rng.uniform(size=k) < 0.3] = 0  # unlabelled joints
            is_crowd = int(rng.uniform() < 0.01)
            ann = {"id": len(anns) + 1, "image_id": img["id"], "category_id": 1, "iscrowd": is_crowd,
                   "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                   "keypoints": [int(v) if j % 3 == 2 else round(float(v), 2) for j, v in enumerate(kp.ravel())],
                   "num_keypoints": int((kp[:, 2] > 0).sum())}
            if not crowd:
                ann["area"] = round(w * h * float(rng.uniform(0.4, 0.9)), 2)
            anns.append(ann)
            if labelled or rng.uniform() < 0.3:
                src = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k)] if not labelled else kp[:, :2]
                for _ in range(int(rng.integers(1, 4))):
                    p = src + rng.normal(0, rng.uniform(0.005, 0.06) * np.sqrt(w * h), (k, 2))
                    res.append({"image_id": img["id"], "category_id": 1,
                                "keypoints": np.c_[p.round(2), rng.uniform(0, 1, k).round(3)].ravel().tolist(),
                                "score": round(float(rng.uniform(0.05, 1)), 4)})
        for _ in range(int(rng.poisson(5.0))):  # false positives
            cx, cy, s = rng.uniform(0, 640), rng.uniform(0, 480), rng.uniform(10, 150)
            p = np.c_[rng.normal(cx, s, k), rng.normal(cy, s, k)]
            res.append({"image_id": img["id"], "category_id": 1,
                        "keypoints": np.c_[p.round(2), rng.uniform(0, 1, k).round(3)].ravel().tolist(),
                        "score": round(float(rng.uniform(0.01, 0.9)), 4)})
    names = [f"k{j}" for j in range(k)]
    gt = {"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person", "keypoints": names}]}
    gt_path, res_path = out / "gt.json", out / "results.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(res))
    return gt_path, res_path, len(anns), len(res)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def run_pycocotools(gt_path: Path, res_path: Path, sigmas: np.ndarray, crowd: bool) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_path))
        if crowd:  # no area: the 0.53 w h proxy, as the CrowdPose protocol
            for a in coco.dataset["annotations"]:
                a["area"] = a["bbox"][2] * a["bbox"][3] * 0.53
        dt = coco.loadRes(str(res_path))
        ev = COCOeval(coco, dt, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:10])


def run_faster(gt_path: Path, res_path: Path, sigmas: np.ndarray, crowd: bool) -> np.ndarray:
    from faster_coco_eval import COCO, COCOeval_faster

    def silent(*_a: Any, **_k: Any) -> None:
        return None

    coco = COCO(str(gt_path), print_function=silent)
    dt = coco.loadRes(str(res_path))
    ev = COCOeval_faster(coco, dt, "keypoints", kpt_oks_sigmas=list(sigmas), use_area=not crowd,
                         print_function=silent)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:10])


_PYCOCOTOOLS_CLI = """
import contextlib, io, json, sys
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(sys.argv[1])
    ev = COCOeval(coco, coco.loadRes(sys.argv[2]), "keypoints")
    ev.evaluate(); ev.accumulate(); ev.summarize()
print(json.dumps([float(v) for v in ev.stats[:10]]))
"""


def whole_process(gt_path: Path, res_path: Path) -> tuple[float, float]:
    """Wall seconds of ``hcbench score pose`` and of a pycocotools script, each a fresh process
    (interpreter start, imports, JSON reading, evaluation, output)."""
    import subprocess

    def run(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=Path(__file__).resolve().parents[1])
        return time.perf_counter() - t0

    ours = run([sys.executable, "-m", "hcbench.cli", "score", "pose", "--gt", str(gt_path), "--pred", str(res_path)])
    ref = run([sys.executable, "-c", _PYCOCOTOOLS_CLI, str(gt_path), str(res_path)])
    return ours, ref


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="100 images: a quick check")
    ap.add_argument("--images", type=int, default=5_000)
    ap.add_argument("--crowd", action="store_true", help="CrowdPose variant (14 keypoints, no area)")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per side")
    ap.add_argument("--no-cli", action="store_true", help="skip the whole-process (fresh interpreter) timing")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.tiny:
        args.images = 100
    sigmas = np.asarray(SIGMAS["crowdpose" if args.crowd else "coco"])
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path, n_gt, n_dt = make_files(Path(tmp), args.images, args.seed, args.crowd)
        print(f"COCO keypoint AP{' (CrowdPose variant)' if args.crowd else ''}: {args.images:,} images, "
              f"{n_gt:,} persons, {n_dt:,} detections")

        def ours() -> dict[str, float]:
            results = json.loads(res_path.read_text())
            return keypoint_ap(gt_path, results, crowd=args.crowd)

        out, t_ours = timed(ours, args.repeat)
        if args.crowd:  # the crowd keys' all-area stats sit at positions 0-2 and 5-7 of the ten
            mine = np.array([out[k] for k in ("AP", "AP50", "AP75", "AR", "AR50", "AR75")])
            pick = [0, 1, 2, 5, 6, 7]
        else:
            mine = np.array([out[k] for k in COCO_KEYS])
            pick = list(range(10))
        ref, t_ref = timed(lambda: run_pycocotools(gt_path, res_path, sigmas, args.crowd), args.repeat)
        fast, t_fast = timed(lambda: run_faster(gt_path, res_path, sigmas, args.crowd), args.repeat)
        d_ref = float(np.max(np.abs(mine - ref[pick])))
        d_fast = float(np.max(np.abs(mine - fast[pick])))
        keys = ("AP", "AP50", "AP75", "AR", "AR50", "AR75") if args.crowd else COCO_KEYS
        print("stats       : " + "  ".join(f"{k} {v:.4f}" for k, v in zip(keys, mine, strict=True)))
        if args.crowd:
            print("splits      : " + "  ".join(f"{k} {out[k]:.4f}" for k in CROWD_KEYS[6:]))
            # the easy/medium/hard splits against the pycocotools backend too (not timed)
            peer = keypoint_ap(gt_path, json.loads(res_path.read_text()), crowd=True, backend="pycocotools")
            d_split = max(abs(out[k] - peer[k]) for k in CROWD_KEYS)
            print(f"all nine crowd keys against the pycocotools backend: max |diff| {d_split:.1e}")
            d_ref = max(d_ref, d_split)
        print(f"hcbench          : {t_ours:7.2f} s")
        print(f"pycocotools      : {t_ref:7.2f} s   ratio pycocotools/hcbench {t_ref / t_ours:5.2f}x   "
              f"max |diff| {d_ref:.1e}")
        print(f"faster-coco-eval : {t_fast:7.2f} s   ratio faster-coco-eval/hcbench {t_fast / t_ours:5.2f}x   "
              f"max |diff| {d_fast:.1e}")
        if not args.crowd and not args.no_cli:
            t_cli, t_cli_ref = whole_process(gt_path, res_path)
            print(f"whole process: hcbench score pose {t_cli:.2f} s, pycocotools script {t_cli_ref:.2f} s: "
                  f"ratio {t_cli_ref / t_cli:.2f}x")
        if d_ref > 1e-9:
            print("MISMATCH: hcbench and pycocotools differ by more than 1e-9")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
