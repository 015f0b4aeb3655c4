"""Loop overhead: the engine's training loop (``fit``) and evaluation loop (``predict_split``)
against the raw loops a user would write, on the same model, batches and optimizer.

    python benchmarks/loop_overhead.py           # ViT-Ti pose 256x192 and parsing 256x256, a few dozen steps
    python benchmarks/loop_overhead.py --tiny    # seconds; what CI runs

Both sides read the same in-memory items (made once, up front), so what is compared is the loop:
- train: ``fit()`` (per-sample generators, loader, autocast context, loss checks, clipping,
  scheduler, progress, its checkpoint at the end of the epoch) against ``for batch: collate ->
  adapter.loss -> zero_grad -> backward -> clip -> step -> scheduler.step`` with an optimizer and
  schedule built the same way, from the same initial weights;
- eval: ``predict_split()`` (decode to keypoints in original pixels / label maps at the original
  size, gather, progress) against ``model(x)`` over the same batches, and against a raw loop doing
  the same flip test (``model(x)`` and ``model(x.flip(-1))``), the goal's reference.
Throughput ratios are raw time / engine time (1.0 = no overhead; goal >= 0.9), from CPU time of
this process (``time.process_time``): other jobs on a shared machine move wall time a lot; each
side (for eval: one forward, forward + flip, engine) runs twice, interleaved, and the faster run
counts. The data pipelines have their own benchmark (``benchmarks/pipeline.py``); the line "eval
items" shows what dropping the training heatmaps from the pose evaluation set saves per item.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

from hcbench.adapters.parsing import ParsingAdapter  # noqa: E402
from hcbench.adapters.pose import PoseAdapter, TopDownDataset  # noqa: E402
from hcbench.backbones import build_backbone  # noqa: E402
from hcbench.cards import TaskCard, get_card, resolve  # noqa: E402
from hcbench.data.cards import get_dataset_card  # noqa: E402
from hcbench.data.readers.coco import read_coco_keypoints  # noqa: E402
from hcbench.engine.loops import fit, predict_split, random_order  # noqa: E402
from hcbench.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from hcbench.engine.progress import Progress  # noqa: E402


class Items(torch.utils.data.Dataset):
    """Pre-made items: both loops read exactly these."""

    def __init__(self, items: list[dict[str, Any]]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def _card(name: str, hw: tuple[int, int], batch: int, epochs: int, eval_batch: int, **adapter: Any) -> TaskCard:
    card = resolve(get_card(name), "full")
    data = card.model_dump()
    data["input"] = {**data["input"], "height": hw[0], "width": hw[1]}
    data["adapter"] = {**data["adapter"], **adapter}
    data["schedule"] = {**data["schedule"], "batch_size": batch, "epochs": epochs, "max_iters": None,
                        "warmup_iters": 2}
    data["eval"] = {**data["eval"], "batch_size": eval_batch, "flip_test": True}
    return TaskCard.model_validate(data)


def pose_items(n: int, hw: tuple[int, int], k: int, rng: np.random.Generator, train: bool) -> list[dict]:
    h, w = hw
    out = []
    for i in range(n):
        it = {"image": torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)),
              "matrix": torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=torch.float64), "index": i}
        if train:
            it["heatmaps"] = torch.from_numpy(rng.random((k, h // 4, w // 4), dtype=np.float32))
            it["weights"] = torch.ones(k)
        out.append(it)
    return out


def parsing_items(n: int, hw: tuple[int, int], classes: int, rng: np.random.Generator,
                  orig: tuple[int, int]) -> list[dict]:
    h, w = hw
    return [{"image": torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)),
             "label": torch.from_numpy(rng.integers(0, classes, (h, w))),
             "valid": torch.tensor(hw), "orig_size": torch.tensor(orig), "index": i} for i in range(n)]


def cpu_time(fn: Callable[[], Any]) -> float:
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def best_of_two(*fns: Callable[[], Any]) -> tuple[float, ...]:
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(2):  # interleaved: a slow spell of the machine hits every side
        for t, fn in zip(times, fns, strict=True):
            t.append(cpu_time(fn))
    return tuple(min(t) for t in times)


def train_pair(adapter, model0: torch.nn.Module, card: TaskCard, items: Items, seed: int) -> tuple[float, float]:
    bs, n = card.schedule.batch_size, len(items)
    ipe = n // bs
    total = card.schedule.epochs * ipe

    def raw() -> None:
        model = copy.deepcopy(model0).train()
        opt = build_optimizer(model, card)
        sched = build_scheduler(opt, card, ipe, total)
        params = list(model.parameters())
        for epoch in range(card.schedule.epochs):
            order = random_order(n, seed, epoch)
            for b in range(ipe):
                batch = adapter.collate([items[i] for i in order[b * bs:(b + 1) * bs]])
                loss = adapter.loss(model, batch)["loss"]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, card.optim.clip_grad or float("inf"))
                opt.step()
                sched.step()

    def engine() -> None:
        model = copy.deepcopy(model0)
        with tempfile.TemporaryDirectory() as work:
            fit(adapter, model, card, items, device=torch.device("cpu"), seed=seed, work_dir=Path(work),
                progress=Progress(enabled=False), resume="never", workers=0)

    return best_of_two(raw, engine)


def eval_triple(adapter, model: torch.nn.Module, card: TaskCard, items: Items) -> tuple[float, float, float]:
    model.eval()
    bs = card.eval.batch_size
    batches = [adapter.collate([items[i] for i in range(s, min(s + bs, len(items)))])
               for s in range(0, len(items), bs)]

    @torch.no_grad()
    def raw(flip: bool) -> None:
        for b in batches:
            model(b["image"])
            if flip:
                model(b["image"].flip(-1))

    def engine() -> None:
        predict_split(adapter, model, card, items, device=torch.device("cpu"), progress=Progress(enabled=False),
                      workers=0)

    t_raw1, t_raw2, t_eng = best_of_two(lambda: raw(False), lambda: raw(True), engine)
    return t_raw1, t_raw2, t_eng


def eval_item_cost(n: int) -> tuple[float, float]:
    """CPU ms per pose evaluation item with and without the training heatmaps (real COCO crops)."""
    root = REPO / "tests" / "real-samples" / "coco"
    split = read_coco_keypoints(root / "test_coco.json", root, get_dataset_card("coco").meta(), name="coco",
                                split="val2017")
    card = resolve(get_card("coco_pose"), "full")
    with_t = TopDownDataset(split, card, train=False, targets=True)
    without = TopDownDataset(split, card, train=False, targets=False)
    m = len(split.samples)

    def run(ds) -> float:
        return cpu_time(lambda: [ds[i % m] for i in range(n)]) / n * 1e3

    return run(with_t), run(without)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny inputs and a few steps (CI)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    if args.tiny:
        pose_hw, parse_hw, n_train, n_eval, bs, orig = (64, 48), (64, 64), 8, 8, 4, (96, 80)
    else:
        pose_hw, parse_hw, n_train, n_eval, bs, orig = (256, 192), (256, 256), 64, 64, 8, (480, 360)
    ok = True
    print(f"torch threads {args.threads}; CPU seconds (best of two, interleaved); ratio = raw / engine (goal >= 0.9)")

    pose = PoseAdapter()
    card = _card("coco_pose", pose_hw, bs, 1, bs, deconv_channels=64 if args.tiny else 256)
    model = pose.build_model(build_backbone("vit_tiny", pose_hw), card)
    k = model.head.final.out_channels
    t_raw, t_fit = train_pair(pose, model, card, Items(pose_items(n_train, pose_hw, k, rng, True)), seed=0)
    print(f"pose train   {pose_hw[0]}x{pose_hw[1]}, {n_train // bs} steps of {bs}: raw {t_raw:.2f} s, fit() {t_fit:.2f} s, "
          f"ratio {t_raw / t_fit:.2f}")
    t1, t2, te = eval_triple(pose, model, card, Items(pose_items(n_eval, pose_hw, k, rng, False)))
    print(f"pose eval    {n_eval} crops: raw model(x) {t1:.2f} s, raw with flip {t2:.2f} s, predict_split {te:.2f} s, "
          f"ratio {t1 / te:.2f} (single forward), {t2 / te:.2f} (same flip test)")

    parsing = ParsingAdapter()
    pcard = _card("lip_parsing", parse_hw, bs, 1, bs, pyramid_channels=32 if args.tiny else 128,
                  decoder_channels=32 if args.tiny else 128)
    classes = get_dataset_card(pcard.dataset.name).meta().num_classes
    pmodel = parsing.build_model(build_backbone("vit_tiny", parse_hw), pcard)
    t_raw, t_fit = train_pair(parsing, pmodel, pcard, Items(parsing_items(n_train, parse_hw, classes, rng, orig)),
                              seed=0)
    print(f"parsing train {parse_hw[0]}x{parse_hw[1]}, {n_train // bs} steps of {bs}: raw {t_raw:.2f} s, "
          f"fit() {t_fit:.2f} s, ratio {t_raw / t_fit:.2f}")
    t1, t2, te = eval_triple(parsing, pmodel, pcard, Items(parsing_items(n_eval, parse_hw, classes, rng, orig)))
    print(f"parsing eval {n_eval} images -> {orig[0]}x{orig[1]} label maps: raw model(x) {t1:.2f} s, raw with flip "
          f"{t2:.2f} s, predict_split {te:.2f} s, ratio {t1 / te:.2f} (single forward), {t2 / te:.2f} (same flip test)")

    with_t, without = eval_item_cost(8 if args.tiny else 100)
    print(f"eval items (pose, real COCO crops 256x192): {with_t:.2f} ms with training heatmaps, {without:.2f} ms "
          f"without ({with_t / without:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
