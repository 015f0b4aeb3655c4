"""The fine-tune and evaluation loops, shared by every task family.

Determinism: every training sample's augmentation RNG is seeded from (seed, epoch, index)
and each epoch's order from (seed, epoch), so a run resumed from a mid-epoch checkpoint sees
exactly the batches, augmentations and optimizer states the uninterrupted run saw.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hcbench.adapters.base import TaskAdapter
from hcbench.cards import TaskCard
from hcbench.engine import distributed as D
from hcbench.engine.checkpoint import load_checkpoint, save_checkpoint
from hcbench.engine.optim import build_optimizer, build_scheduler
from hcbench.engine.progress import Progress


def _derive(*parts: int) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") % (2**31)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class SeededDataset(Dataset):
    """Seeds python/numpy/torch RNGs from (seed, epoch, index) before each item."""

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed, self.epoch = base, seed, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        seed_everything(_derive(self.seed, self.epoch, int(i)))
        return self.base[i]


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def num_workers() -> int:
    env = os.environ.get("HCBENCH_WORKERS")
    return int(env) if env is not None else max(0, min(4, (os.cpu_count() or 1) - 1))


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0  # optimizer steps done
    last_losses: dict | None = None


def epoch_order(dataset: Dataset, adapter: TaskAdapter, card: TaskCard, seed: int, epoch: int) -> list[int]:
    sampler = adapter.train_sampler(dataset, card, _derive(seed, epoch))
    if sampler is None:
        g = torch.Generator().manual_seed(_derive(seed, epoch))
        return torch.randperm(len(dataset), generator=g).tolist()
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    return list(iter(sampler))


def fit(adapter: TaskAdapter, model: nn.Module, card: TaskCard, train_ds: Dataset, *, device: torch.device,
        seed: int, work_dir: Path, progress: Progress, checkpoint_every: int | None = None,
        on_step: Callable[[int], None] | None = None) -> TrainState:
    """Fine-tune ``model`` per ``card``; resumes from ``work_dir/last.pt`` when present."""
    s = card.schedule
    world, rank = D.world_size(), D.rank()
    global_bs = s.batch_size
    if global_bs % world:
        raise ValueError(f"batch size {global_bs} of card {card.name} is not divisible by world size {world}")
    local_bs = global_bs // world
    data = SeededDataset(train_ds, seed)
    iters_per_epoch = max(len(train_ds) // global_bs, 1)
    total = s.epochs * iters_per_epoch if s.max_iters is None else min(s.max_iters, s.epochs * iters_per_epoch)
    epochs = -(-total // iters_per_epoch)

    model.to(device)
    optimizer = build_optimizer(model, card)
    scheduler = build_scheduler(optimizer, card, iters_per_epoch, total)
    state = TrainState()
    ckpt = work_dir / "last.pt"
    if ckpt.exists():
        extra = load_checkpoint(ckpt, model, optimizer, scheduler)
        state.epoch, state.step = extra["epoch"], extra["step"]
        progress.log(f"resumed {card.name} from {ckpt} at step {state.step}/{total}")
    ddp_model = D.wrap(model, device)
    use_amp = device.type == "cuda"
    scaler_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    task = progress.task(f"train {card.name}", total=total, completed=state.step, unit="img", per_step=global_bs)
    model.train()
    while state.step < total:
        epoch = state.step // iters_per_epoch
        data.epoch = epoch
        order = epoch_order(train_ds, adapter, card, seed, epoch)
        start = state.step - epoch * iters_per_epoch  # resume mid-epoch: skip the batches already seen
        n_batches = min(iters_per_epoch, total - epoch * iters_per_epoch)
        batches = [order[b * global_bs:(b + 1) * global_bs] for b in range(start, n_batches)]
        batches = [b[rank * local_bs:(rank + 1) * local_bs] for b in batches if len(b) == global_bs]
        if len(batches) < n_batches - start:
            raise RuntimeError(f"{card.name}: the training sampler gave {len(batches) + start} full batches of "
                               f"{global_bs} in epoch {epoch}, the schedule needs {n_batches}")
        loader = DataLoader(data, batch_sampler=batches, collate_fn=adapter.collate, num_workers=num_workers(),
                            persistent_workers=False)
        for batch in loader:
            batch = to_device(batch, device)
            # stochastic layers and samplers inside the model (dropout, detector proposal sampling)
            # draw from a stream fixed by (seed, step), so a resumed run repeats them exactly
            torch.manual_seed(_derive(seed, rank, 10**9 + state.step))
            with torch.autocast(device.type, dtype=scaler_dtype, enabled=use_amp):
                losses = adapter.loss(ddp_model, batch)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{card.name}: non-finite loss {loss.item()} at step {state.step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if card.optim.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), card.optim.clip_grad)
            optimizer.step()
            scheduler.step()
            state.step += 1
            state.last_losses = {k: float(v.detach()) for k, v in losses.items() if torch.is_tensor(v) and v.numel() == 1}
            progress.advance(task, losses=state.last_losses, lr=optimizer.param_groups[-1]["lr"])
            if on_step is not None:
                on_step(state.step)
            end_of_epoch = state.step % iters_per_epoch == 0 or state.step == total
            if rank == 0 and (end_of_epoch or (checkpoint_every and state.step % checkpoint_every == 0)):
                save_checkpoint(ckpt, model, optimizer, scheduler, epoch=epoch, step=state.step)
        D.barrier()
    state.epoch = epochs
    progress.finish(task)
    return state


@torch.no_grad()
def predict_split(adapter: TaskAdapter, model: nn.Module, card: TaskCard, eval_ds: Dataset, *,
                  device: torch.device, progress: Progress) -> list[dict]:
    """Predictions for every eval sample, gathered from all ranks exactly once, in index order."""
    model.to(device).eval()
    world, rank = D.world_size(), D.rank()
    mine = list(range(rank, len(eval_ds), world))  # disjoint shards: no padding, no duplicates
    bs = card.eval.batch_size
    batches = [mine[i:i + bs] for i in range(0, len(mine), bs)]
    loader = DataLoader(eval_ds, batch_sampler=batches, collate_fn=adapter.collate, num_workers=num_workers())
    task = progress.task(f"eval  {card.name}", total=len(eval_ds), unit="img", per_step=1)
    preds: list[dict] = []
    use_amp = device.type == "cuda"
    for batch in loader:
        batch = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = adapter.predict(model, batch, card)
        preds.extend(_to_cpu(out))
        progress.advance(task, n=len(out) * world)
    progress.finish(task)
    gathered = D.gather_objects(preds)
    model.train()
    if rank != 0:
        return []
    by_index = {int(p["index"]): p for p in gathered}
    if len(by_index) != len(eval_ds):
        raise RuntimeError(f"{card.name}: gathered {len(by_index)} predictions for {len(eval_ds)} samples")
    return [by_index[i] for i in range(len(eval_ds))]


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().float().cpu() if obj.is_floating_point() else obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
