"""Per-step time of the pretraining methods: ViT-Ti student, ViT-S teacher (both 12 blocks,
random weights), one optimizer step (forward, backward, AdamW, EMA), on one fixed batch.

    python benchmarks/pretrain_step.py                  # small views (128x64 / 64x48 / 128x128), CPU
    python benchmarks/pretrain_step.py --size full --batch 64 --device cuda

Prints seconds per step (median of ``--steps`` after one warm-up step) for each method and the
ratio to ``feature-kd`` (Proteus-style distillation of the same student from the same teacher:
one student and one teacher forward of the person view), measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcbench.backbones import build_backbone  # noqa: E402
from hcbench.engine.loops import seed_everything  # noqa: E402
from hcbench.pretrain import get_method  # noqa: E402
from hcbench.pretrain.views import MultiViewDataset, ViewConfig, collate_views  # noqa: E402


def make_batch(tmp: Path, views: ViewConfig, n: int):
    from PIL import Image

    rng = np.random.default_rng(0)
    tmp.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = tmp / f"{i}.png"
        Image.fromarray((rng.random((256, 128, 3)) * 255).astype(np.uint8)).save(p)
        paths.append(p)
    seed_everything(0)
    ds = MultiViewDataset(paths, views)
    return collate_views([ds[i] for i in range(n)])


def time_method(name: str, batch, views: ViewConfig, size: str, device: torch.device, steps: int) -> float:
    torch.manual_seed(0)
    cls = get_method(name)
    teacher = build_backbone("vit_small", views.global_size) if cls.needs_teacher else None
    method = cls(build_backbone("vit_tiny", views.global_size), teacher, cls.Options.preset(size)).to(device)
    opt = torch.optim.AdamW(method.param_groups(0.05), lr=1e-4, betas=(0.9, 0.95))
    batch = batch.to(device)
    use_amp = device.type == "cuda"
    times = []
    for i in range(steps + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = method(batch, 0.5)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.after_step(0.5)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step pays lazy imports and allocations
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=["small", "full"], default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    views = ViewConfig.preset(args.size)
    device = torch.device(args.device)
    batch = make_batch(Path("/tmp/hcbench_pretrain_bench"), views, args.batch)
    results = {m: time_method(m, batch, views, args.size, device, args.steps) for m in ("feature-kd", "dpal", "saip")}
    peer = results["feature-kd"]
    print(f"views={args.size} batch={args.batch} device={device} threads={torch.get_num_threads()}")
    for m, s in results.items():
        print(f"{m:>10}: {s:7.3f} s/step  ({s / peer:5.2f}x feature-kd)")


if __name__ == "__main__":
    main()
