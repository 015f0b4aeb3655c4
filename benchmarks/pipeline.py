"""Training data pipelines: samples/s per core of the pose, parsing and ReID training transforms on
real-size images, against the floor of the same work measured in the same run.

    python benchmarks/pipeline.py            # ~200 items per family (a minute or two on one free core)
    python benchmarks/pipeline.py --tiny     # seconds; what CI runs

Images: the real COCO samples in ``tests/real-samples/coco`` (640 x 425 .. 640 x 480 JPEGs),
replicated. Pose: every annotated person of ``test_coco.json`` through the ``coco_pose`` card's
full-tier transform (256 x 192 crop with flip, half-body 0.3, scale 0.75-1.25, rotation 40 deg with
p 0.6, UDP targets sigma 2). Parsing: the whole images with a label map of the same size (written
here: class blocks) through the ``lip_parsing`` card's training transform (keep-ratio fit into
473 x 473, random scale 0.5-2.0, flip with left/right class swap, crop). ReID: the person boxes cut
out of the same images and stored as JPEG (quality 95), through the ``market_reid`` card's training
transform (256 x 128, flip, pad 10 + crop, random erasing). Every item goes through the engine's
:class:`~hcbench.engine.loops.SeededDataset`, so the per-sample generator is part of the cost.

Floors, on the very same files: JPEG decode alone (Pillow, full decode to RGB), and decode + one
bilinear affine warp of the whole image to the family's output size (Pillow ``Image.transform``,
the fastest warp among the decided dependencies; opencv is not one). Each figure is samples per
CPU-second of this process with one torch thread (``time.process_time``): on a machine that other
jobs keep busy, CPU time is what one core delivers; the wall figure is printed alongside. The floors
and the transform run in turn, in three rounds by default, and each keeps its best round: a slow
spell of the machine then cannot fall on one side only.

The last lines say how many such cores would feed a GPU training ViT-B pose at 1,500 samples/s.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from hcbench.adapters.parsing import ParsingDataset  # noqa: E402
from hcbench.adapters.pose import TopDownDataset  # noqa: E402
from hcbench.adapters.reid import ReIDDataset, image_transform  # noqa: E402
from hcbench.cards import get_card, resolve  # noqa: E402
from hcbench.data.cards import get_dataset_card  # noqa: E402
from hcbench.data.readers.coco import read_coco_keypoints  # noqa: E402
from hcbench.data.transforms.image import load_rgb  # noqa: E402
from hcbench.data.types import DatasetSplit, ParsingSample, ReIDSample  # noqa: E402
from hcbench.engine.loops import SeededDataset  # noqa: E402

COCO = REPO / "tests" / "real-samples" / "coco"
GPU_RATE = 1500.0  # samples/s a GPU training ViT-B pose at 256 x 192 consumes (issue 18)


def timed(fns: dict[str, Callable[[int], object]], n: int, rounds: int) -> dict[str, tuple[float, float]]:
    """(samples per CPU-second, samples per wall-second) of each ``fn(i)`` for i < n, after one
    warm-up: the best of ``rounds`` rounds that run every fn in turn, so that a slow spell of a
    shared machine hits the floor and the transform alike instead of skewing their ratio."""
    for fn in fns.values():
        fn(0)
    best = {k: (0.0, 0.0) for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(n):
                fn(i)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            best[k] = (max(best[k][0], n / max(cpu, 1e-9)), max(best[k][1], n / max(wall, 1e-9)))
    return best


def floor_fns(paths: list[Path], out_wh: tuple[int, int]) -> tuple[Callable[[int], object], Callable[[int], object]]:
    def decode(i: int):
        return load_rgb(paths[i % len(paths)])

    def decode_warp(i: int):
        with Image.open(paths[i % len(paths)]) as im:
            im.load()
            im = im if im.mode == "RGB" else im.convert("RGB")
            w, h = im.size
            # the whole image onto the output, a slight rotation so the warp is a general affine
            a = math.radians(3.0)
            sx, sy = w / out_wh[0], h / out_wh[1]
            coeffs = (sx * math.cos(a), -sy * math.sin(a), 0.0, sx * math.sin(a), sy * math.cos(a), 0.0)
            return np.asarray(im.transform(out_wh, Image.Transform.AFFINE, coeffs, Image.Resampling.BILINEAR))

    return decode, decode_warp


def pose_data(work: Path, tiny: bool) -> tuple[SeededDataset, list[Path]]:
    meta = get_dataset_card("coco").meta()
    split = read_coco_keypoints(COCO / "test_coco.json", COCO, meta, name="coco", split="train2017")
    samples = [s for s in split.samples if (s.keypoints[:, 2] > 0).sum() > 0]
    split.samples = samples
    ds = TopDownDataset(split, resolve(get_card("coco_pose"), "full"), train=True)
    return SeededDataset(ds, seed=0), [s.image for s in samples]


def parsing_data(work: Path, tiny: bool) -> tuple[SeededDataset, list[Path]]:
    meta = get_dataset_card("lip").meta()
    samples = []
    for img in sorted(COCO.glob("*.jpg")):
        w, h = Image.open(img).size
        yy, xx = np.mgrid[0:h, 0:w]
        label = ((yy // 40 + xx // 50) % meta.num_classes).astype(np.uint8)  # class blocks, left/right included
        lab = work / f"{img.stem}.png"
        Image.fromarray(label, mode="L").save(lab)
        samples.append(ParsingSample(image=img, label=lab, sample_id=img.stem))
    split = DatasetSplit("lip", "train", "parsing", samples, meta)
    return SeededDataset(ParsingDataset(split, resolve(get_card("lip_parsing"), "full"), train=True), seed=0), \
        [s.image for s in samples]


def reid_data(work: Path, tiny: bool) -> tuple[SeededDataset, list[Path]]:
    gt = json.loads((COCO / "test_coco.json").read_text())
    files = {im["id"]: COCO / im["file_name"] for im in gt["images"]}
    samples = []
    for k, ann in enumerate(a for a in gt["annotations"] if a["bbox"][2] >= 16 and a["bbox"][3] >= 32):
        x, y, w, h = ann["bbox"]
        crop = Image.open(files[ann["image_id"]]).convert("RGB").crop((int(x), int(y), int(x + w), int(y + h)))
        path = work / f"person_{k:03d}.jpg"
        crop.save(path, quality=95)
        samples.append(ReIDSample(image=path, pid=k % 8 + 1, camid=k % 2, role="train"))
    card = resolve(get_card("market_reid"), "full")
    size = (card.input.height, card.input.width)
    aug = card.augment
    tf = image_transform(size, True, float(aug.get("flip", 0.5)), int(aug.get("pad", 10)),
                         float(aug.get("random_erasing", 0.5)))
    split = DatasetSplit("market1501", "train", "reid", samples, None)
    return SeededDataset(ReIDDataset(split, tf, [s.pid - 1 for s in samples]), seed=0), [s.image for s in samples]


def cv2_floor(paths: list[Path], out_wh: tuple[int, int]) -> Callable[[int], object] | None:
    """Decode + ``cv2.warpAffine`` when opencv happens to be importable (it is not a dependency):
    the floor issue 18 quoted, printed for comparison only."""
    try:
        import cv2
    except ImportError:
        return None
    cv2.setNumThreads(1)

    def decode_warp(i: int):
        img = cv2.cvtColor(cv2.imread(str(paths[i % len(paths)])), cv2.COLOR_BGR2RGB)
        h, w = img.shape[:2]
        a = math.radians(3.0)
        sx, sy = out_wh[0] / w, out_wh[1] / h
        m = np.array([[sx * math.cos(a), sx * math.sin(a), 0.0], [-sy * math.sin(a), sy * math.cos(a), 0.0]])
        return cv2.warpAffine(img, m, out_wh, flags=cv2.INTER_LINEAR)

    return decode_warp


FAMILIES = {  # family -> (data builder, output (w, h) of its one warp)
    "pose": (pose_data, (192, 256)),
    "parsing": (parsing_data, (473, 473)),
    "reid": (reid_data, (128, 256)),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="a few items per family (CI)")
    ap.add_argument("--items", type=int, default=None, help="items per measurement (default 200, tiny 6)")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds, the best counts (default 3, tiny 1)")
    args = ap.parse_args(argv)
    n = args.items or (6 if args.tiny else 200)
    rounds = max(1, args.rounds or (1 if args.tiny else 3))
    torch.set_num_threads(1)  # one core's throughput: a loader worker runs one torch thread
    work = Path(tempfile.mkdtemp(prefix="hcbench-pipeline-"))
    rates: dict[str, float] = {}
    ratios: dict[str, float] = {}
    cv_lines: list[str] = []
    print(f"{n} items per measurement, best of {rounds} interleaved round(s); samples per CPU-second of one core "
          "(wall samples/s in brackets)")
    print(f"{'family':8s} {'decode':>15s} {'decode+warp':>15s} {'transform':>15s} {'/decode+warp':>13s} {'/decode':>8s}")
    try:
        for fam in args.families:
            build, out_wh = FAMILIES[fam]
            ds, paths = build(work, args.tiny)
            decode, decode_warp = floor_fns(paths, out_wh)
            epoch = [0]

            def item(i: int, ds=ds, epoch=epoch):
                if i % len(ds) == 0:
                    epoch[0] += 1  # a new epoch every pass: every replica draws fresh augmentation
                    ds.epoch = epoch[0]
                return ds[i % len(ds)]

            fns = {"decode": decode, "decode_warp": decode_warp, "transform": item}
            cv = cv2_floor(paths, out_wh)
            if cv is not None:
                fns["cv2"] = cv
            r = timed(fns, n, rounds)
            d, dw, t = r["decode"], r["decode_warp"], r["transform"]
            rates[fam], ratios[fam] = t[0], t[0] / dw[0]
            print(f"{fam:8s} {d[0]:7.0f} [{d[1]:5.0f}] {dw[0]:7.0f} [{dw[1]:5.0f}] {t[0]:7.0f} [{t[1]:5.0f}] "
                  f"{t[0] / dw[0]:12.2f}x {t[0] / d[0]:7.2f}x")
            if cv is not None:
                c = r["cv2"]
                cv_lines.append(f"  {fam}: cv2 decode+warpAffine {c[0]:.0f}/s; transform = {t[0] / c[0]:.2f}x of it")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if cv_lines:
        print("for comparison, opencv (importable here, not a dependency of hcbench):", *cv_lines, sep="\n")
    print("goal >= 0.80x the decode+warp floor: "
          + ", ".join(f"{f} {ratios[f]:.2f}x {'met' if ratios[f] >= 0.8 else 'NOT met'}" for f in ratios))
    if "pose" in rates:
        cores = math.ceil(GPU_RATE / rates["pose"])
        print(f"cores to feed a GPU training ViT-B pose at {GPU_RATE:.0f} samples/s: {cores} "
              f"(pose transform {rates['pose']:.0f} samples/s per core; plus one for the training process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
