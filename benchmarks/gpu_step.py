"""The measurements behind ``benchmarks/gpu_check.sh``: training steps of a pose model (ViT-B at
256 x 192 on a GPU, bf16 autocast) through the engine's ``fit()`` and through a raw loop, with and
without channels_last, and (under ``torchrun``) wrapped in DistributedDataParallel.

Each call measures one part and merges its figures into the JSON file ``--out`` (written
atomically), so the shell script can run the single-process part and the ``torchrun`` part as two
processes and still leave one file. Steady-state throughput: samples per second over the steps
after ``--warmup`` (GPU synchronised at both ends), so start-up, loader workers and the end-of-run
checkpoint stay out of the figure. ``--device cpu`` runs the same logic on the CPU in fp32 (the
dry run the tests use; its timings mean nothing).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from hcbench.adapters.pose import PoseAdapter  # noqa: E402
from hcbench.backbones import build_backbone  # noqa: E402
from hcbench.cards import TaskCard, get_card, resolve  # noqa: E402
from hcbench.engine.device import precision_for  # noqa: E402
from hcbench.engine.loops import fit  # noqa: E402
from hcbench.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from hcbench.engine.progress import Progress  # noqa: E402


class CycledItems(torch.utils.data.Dataset):
    """``n`` items that cycle through a few pre-made ones (memory stays small at any length)."""

    def __init__(self, items: list[dict[str, Any]], n: int):
        self.items, self.n = items, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.items[i % len(self.items)], "index": i}


def make_card(hw: tuple[int, int], batch: int, steps: int) -> TaskCard:
    data = resolve(get_card("coco_pose"), "full").model_dump()
    data["input"] = {**data["input"], "height": hw[0], "width": hw[1]}
    data["schedule"] = {**data["schedule"], "batch_size": batch, "epochs": 1, "max_iters": steps, "warmup_iters": 2}
    return TaskCard.model_validate(data)


def make_items(hw: tuple[int, int], k: int, count: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    h, w = hw
    return [{"image": torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)),
             "heatmaps": torch.from_numpy(rng.random((k, h // 4, w // 4), dtype=np.float32)),
             "weights": torch.ones(k), "matrix": torch.eye(3, dtype=torch.float64)[:2]} for _ in range(count)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_loop(adapter, model: torch.nn.Module, card: TaskCard, batch: dict[str, Any], device: torch.device,
             steps: int, warmup: int, channels_last: bool) -> float:
    """Samples/s of the plainest AMP training loop on one pre-collated batch kept on the device."""
    model = model.to(device).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        batch = {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    opt = build_optimizer(model, card)
    sched = build_scheduler(opt, card, steps, steps)
    prec = precision_for(device)
    params = list(model.parameters())
    t0 = 0.0
    for step in range(steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        with prec.autocast():
            loss = adapter.loss(model, batch)["loss"]
        opt.zero_grad(set_to_none=True)
        prec.backward_and_step(loss, opt, params, card.optim.clip_grad)
        sched.step()
    sync(device)
    return (steps - warmup) * batch["image"].shape[0] / (time.perf_counter() - t0)


def fit_loop(adapter, model: torch.nn.Module, card: TaskCard, items: list[dict[str, Any]], device: torch.device,
             steps: int, warmup: int) -> float:
    """Samples/s of ``fit()`` over the steps after ``warmup`` (its loader, workers and checkpoint included
    in the run, only the steady steps in the figure)."""
    marks: dict[int, float] = {}

    def on_step(step: int) -> None:
        if step in (warmup, steps):
            sync(device)
            marks[step] = time.perf_counter()

    with tempfile.TemporaryDirectory() as work:
        fit(adapter, model, card, CycledItems(items, steps * card.schedule.batch_size), device=device, seed=0,
            work_dir=Path(work), progress=Progress(enabled=False), resume="never", on_step=on_step)
    return (steps - warmup) * card.schedule.batch_size / (marks[steps] - marks[warmup])


def merge(out: Path, figures: dict[str, Any]) -> None:
    data = json.loads(out.read_text()) if out.exists() else {}
    data.update(figures)
    tmp = out.with_suffix(out.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", default="vit_base")
    ap.add_argument("--hw", type=int, nargs=2, default=(256, 192))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--ddp", action="store_true", help="under torchrun: the raw loop wrapped in DDP")
    ap.add_argument("--backend", default=None, help="process group backend (default nccl on CUDA, else gloo)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if args.steps <= args.warmup:
        ap.error("--steps must exceed --warmup")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu (the dry run)", file=sys.stderr)
        return 2
    hw = (int(args.hw[0]), int(args.hw[1]))
    torch.manual_seed(0)
    adapter = PoseAdapter()
    card = make_card(hw, args.batch, args.steps)
    model = adapter.build_model(build_backbone(args.model, hw), card)
    k = model.head.final.out_channels
    items = make_items(hw, k, min(args.batch, 16))
    batch = adapter.collate([items[i % len(items)] | {"index": i} for i in range(args.batch)])
    batch = {key: v.to(device) if torch.is_tensor(v) else v for key, v in batch.items()}
    prec = precision_for(device)
    common = {"model": args.model, "input": list(hw), "batch": args.batch, "steps_timed": args.steps - args.warmup,
              "amp": str(prec.dtype).replace("torch.", "") if prec.dtype else "fp32"}

    if args.ddp:
        import torch.distributed as dist

        backend = args.backend or ("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group(backend)
        try:
            net = model.to(device)
            ddp = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                            else None)
            rate = raw_loop(adapter, ddp, card, batch, device, args.steps, args.warmup, channels_last=False)
            if dist.get_rank() == 0:
                merge(args.out, {"ddp": {"backend": backend, "world_size": dist.get_world_size(),
                                         "samples_per_s": rate}})
                print(f"torchrun {backend} x{dist.get_world_size()}: {rate:.1f} samples/s")
        finally:
            dist.destroy_process_group()
        return 0

    raw = raw_loop(adapter, copy.deepcopy(model), card, batch, device, args.steps, args.warmup, channels_last=False)
    raw_cl = raw_loop(adapter, copy.deepcopy(model), card, batch, device, args.steps, args.warmup, channels_last=True)
    engine = fit_loop(adapter, copy.deepcopy(model), card, items, device, args.steps, args.warmup)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'cpu'})"
    merge(args.out, {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "device": name,
        "dry_run": device.type != "cuda", "torch": torch.__version__, "cpu_cores": len(os.sched_getaffinity(0)),
        **common,
        "raw_samples_per_s": raw, "raw_channels_last_samples_per_s": raw_cl,
        "channels_last_helps": raw_cl > raw, "fit_samples_per_s": engine, "fit_over_raw": engine / raw,
    })
    print(f"{args.model} {hw[0]}x{hw[1]} batch {args.batch} ({common['amp']}) on {name}: raw {raw:.1f} samples/s, "
          f"channels_last {raw_cl:.1f}, fit() {engine:.1f} (ratio {engine / raw:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
