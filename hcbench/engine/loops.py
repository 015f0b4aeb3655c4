"""The training loop (fine-tuning and pretraining alike) and the evaluation loop.

Fine-tuning (:func:`fit`) and pretraining (``hcbench.pretrain.runner``) each supply a step
function to :func:`train_loop`, which owns mixed precision, checkpoints, resume, seeding and
the data loader.

Determinism: every training sample's augmentation RNG is seeded from (seed, epoch, index)
and each epoch's order from (seed, epoch), so a run resumed from a mid-epoch checkpoint sees
exactly the batches, augmentations and optimizer states the uninterrupted run saw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hcbench.adapters.base import TaskAdapter
from hcbench.cards import TaskCard
from hcbench.data.rng import sample_rng
from hcbench.engine import distributed as D
from hcbench.engine.checkpoint import load_checkpoint, save_checkpoint
from hcbench.engine.device import Precision, precision_for
from hcbench.engine.optim import build_optimizer, build_scheduler
from hcbench.engine.progress import Progress
from hcbench.engine.threads import configure_threads, loader_workers, worker_init
from hcbench.errors import ConfigError, ResumeError
from hcbench.io import remove_stale_temps


def _derive(*parts: int) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little") % (2**31)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class SeededDataset(Dataset):
    """Gives each item randomness fixed by (seed, epoch, index).

    A base dataset with ``seeded_item(index, rng)`` gets its own numpy generator
    (:func:`hcbench.data.rng.sample_rng`); any other has python/numpy/torch's global RNGs seeded
    before the item -- torch's CPU generator only: ``torch.manual_seed`` also seeds the lazy
    CUDA/XPU generators, 0.3-1.1 ms per item (issue 18), and items are made on the CPU.
    """

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed, self.epoch = base, seed, 0
        self._seeded_item = getattr(base, "seeded_item", None)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int | tuple[int, int]):
        # (epoch, index) from the training loop's sampler: one loader, and its worker processes,
        # serves every epoch, and workers need not be told the epoch
        epoch, i = (int(i[0]), int(i[1])) if isinstance(i, tuple) else (self.epoch, int(i))
        if self._seeded_item is not None:
            return self._seeded_item(i, sample_rng(self.seed, epoch, i))
        s = _derive(self.seed, epoch, i)
        random.seed(s)
        np.random.seed(s % (2**32))
        torch.default_generator.manual_seed(s)
        return self.base[i]


def to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    if callable(getattr(obj, "to", None)):  # batch objects that move themselves (MultiViewBatch)
        return obj.to(device)
    return obj


class _Batches:
    """A batch sampler over a generator function: batches are made as the loader asks for them."""

    def __init__(self, make: Callable[[], Any]):
        self.make = make

    def __iter__(self):
        return self.make()


def make_loader(dataset: Dataset, batches: Any, collate: Callable, *, workers: int,
                device: torch.device) -> DataLoader:
    """A loader over explicit batches; threads are set so that the main process and its workers
    together use no more cores than the process may (see :mod:`hcbench.engine.threads`)."""
    configure_threads(workers)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                      worker_init_fn=worker_init if workers else None, pin_memory=device.type == "cuda")


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0  # optimizer steps done
    last_losses: dict | None = None
    lr: float | None = None


@dataclass
class TrainLoop:
    """What one training run needs besides its model, data and step function.

    ``name`` labels messages ("resumed NAME from ..."); ``label`` the progress bar.
    ``identity``: what a checkpoint must agree on to be resumed (JSON-able).
    ``resume``: ``"auto"`` resumes a matching ``checkpoint`` and starts afresh (saying why) from
    one of another run; ``"strict"`` raises :class:`~hcbench.errors.ResumeError` on a mismatch;
    ``"never"`` deletes it and starts from scratch (``--force``).
    """

    name: str
    label: str
    total: int
    iters_per_epoch: int
    global_batch: int
    seed: int
    checkpoint: Path
    identity: dict[str, Any] = field(default_factory=dict)
    resume: Literal["auto", "strict", "never"] = "auto"
    checkpoint_every: int | None = None
    clip_grad: float | None = None
    workers: int | None = None
    lr_group: int = -1  # the param group whose lr the progress bar shows


StepHook = Callable[[TrainState], None]


def _restore(loop: TrainLoop, model: nn.Module, optimizer, scheduler, precision: Precision,
             progress: Progress) -> TrainState:
    state = TrainState()
    ckpt = loop.checkpoint
    if D.is_main():
        for tmp in remove_stale_temps(ckpt):
            progress.log(f"removed {tmp}: the temp file of an interrupted checkpoint write")
        if loop.resume == "never" and ckpt.exists():
            ckpt.unlink()
            progress.log(f"starting {loop.name} from scratch: removed {ckpt}")
    D.barrier()
    if loop.resume == "never" or not ckpt.exists():
        return state
    try:
        saved = load_checkpoint(ckpt, model, optimizer, scheduler, identity=loop.identity)
    except ResumeError as e:
        if loop.resume == "strict":
            raise
        progress.log(f"not resuming {loop.name}: {e}; starting from scratch")
        return state
    precision.load_state_dict(saved.get("scaler"))
    state.epoch, state.step = saved["epoch"], saved["step"]
    progress.log(f"resumed {loop.name} from {ckpt} at step {state.step}/{loop.total}")
    return state


def train_loop(loop: TrainLoop, model: nn.Module, step_fn: Callable[[Any, int], dict[str, torch.Tensor]],
               optimizer: torch.optim.Optimizer, scheduler, dataset: Dataset, *,
               order: Callable[[int], list[int]], collate: Callable, device: torch.device, progress: Progress,
               clip_params: list[torch.nn.Parameter] | None = None, precision: Precision | None = None,
               on_start: StepHook | None = None, on_step: list[StepHook] | tuple[StepHook, ...] = ()) -> TrainState:
    """The training loop of fine-tuning and pretraining alike.

    ``step_fn(batch, step)`` (``step``: optimizer steps done before this one) returns named
    scalar losses with the total under ``"loss"``; it runs under the run's autocast. ``dataset``
    is indexed through a :class:`SeededDataset`, ``order(epoch)`` gives the epoch's sample order. The loop resumes from (and writes)
    ``loop.checkpoint`` -- at every epoch end and every ``checkpoint_every`` steps, on rank 0 --
    skipping the batches a resumed epoch already saw, and seeds the model's own randomness by
    (seed, rank, step). ``on_start`` sees the restored state; each ``on_step`` hook runs after
    every optimizer step, before that step's checkpoint.
    """
    world, rank = D.world_size(), D.rank()
    global_bs = loop.global_batch
    if global_bs % world:
        raise ConfigError(f"{loop.name}: batch size {global_bs} is not divisible by the world size {world}")
    local_bs = global_bs // world
    ipe, total = loop.iters_per_epoch, loop.total
    precision = precision or precision_for(device)
    data = SeededDataset(dataset, loop.seed)
    state = _restore(loop, model, optimizer, scheduler, precision, progress)
    if on_start is not None:
        on_start(state)
    params = clip_params if clip_params is not None else [p for g in optimizer.param_groups for p in g["params"]]
    workers = loader_workers(loop.workers, accelerator=device.type != "cpu")
    task = progress.task(loop.label, total=total, completed=state.step, unit="img", per_step=global_bs)

    def run_batches():  # this rank's batches of (epoch, index) from the resume point to the end
        step = state.step
        while step < total:
            epoch = step // ipe
            epoch_order = order(epoch)
            start = step - epoch * ipe  # resume mid-epoch: skip the batches already seen
            n_batches = min(ipe, total - epoch * ipe)
            batches = [epoch_order[b * global_bs:(b + 1) * global_bs] for b in range(start, n_batches)]
            batches = [b[rank * local_bs:(rank + 1) * local_bs] for b in batches if len(b) == global_bs]
            if len(batches) < n_batches - start:
                raise RuntimeError(f"{loop.name}: the training sampler gave {len(batches) + start} full batches "
                                   f"of {global_bs} in epoch {epoch}, the schedule needs {n_batches}")
            yield from ([(epoch, int(i)) for i in b] for b in batches)
            step = epoch * ipe + n_batches

    # one loader for the whole run: its workers start once, not at every epoch (issue 18)
    if state.step < total:
        for batch in make_loader(data, _Batches(run_batches), collate, workers=workers, device=device):
            epoch = state.step // ipe
            batch = to_device(batch, device)
            # stochastic layers and samplers inside the model (dropout, masks, detector proposal
            # sampling) draw from a stream fixed by (seed, step), so a resumed run repeats them exactly
            torch.manual_seed(_derive(loop.seed, rank, 10**9 + state.step))
            with precision.autocast():
                losses = step_fn(batch, state.step)
            loss = losses["loss"]
            if not torch.isfinite(loss):
                detail = ", ".join(f"{k}={float(v):.4g}" for k, v in losses.items()
                                   if torch.is_tensor(v) and v.numel() == 1)
                raise FloatingPointError(f"{loop.name}: non-finite loss {loss.item()} at step {state.step}: {detail}")
            optimizer.zero_grad(set_to_none=True)
            precision.backward_and_step(loss, optimizer, params, loop.clip_grad)
            scheduler.step()
            state.step += 1
            state.epoch = epoch
            state.last_losses = {k: float(v.detach()) for k, v in losses.items()
                                 if torch.is_tensor(v) and v.numel() == 1}
            state.lr = optimizer.param_groups[loop.lr_group]["lr"]
            for hook in on_step:
                hook(state)
            progress.advance(task, losses=state.last_losses, lr=state.lr)
            end_of_epoch = state.step % ipe == 0 or state.step == total
            if rank == 0 and (end_of_epoch or (loop.checkpoint_every and state.step % loop.checkpoint_every == 0)):
                save_checkpoint(loop.checkpoint, model, optimizer, scheduler, epoch=epoch, step=state.step,
                                identity=loop.identity, scaler=precision.state_dict(), losses=state.last_losses)
            if end_of_epoch:
                D.barrier()
    progress.finish(task)
    return state


def epoch_order(dataset: Dataset, adapter: TaskAdapter, card: TaskCard, seed: int, epoch: int) -> list[int]:
    sampler = adapter.train_sampler(dataset, card, _derive(seed, epoch))
    if sampler is None:
        return random_order(len(dataset), seed, epoch)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    return list(iter(sampler))


def random_order(n: int, seed: int, epoch: int) -> list[int]:
    """The epoch's permutation of ``n`` samples, fixed by (seed, epoch)."""
    g = torch.Generator().manual_seed(_derive(seed, epoch))
    return torch.randperm(n, generator=g).tolist()


def fit(adapter: TaskAdapter, model: nn.Module, card: TaskCard, train_ds: Dataset, *, device: torch.device,
        seed: int, work_dir: Path, progress: Progress, checkpoint_every: int | None = None,
        on_step: Callable[[int], None] | None = None, identity: dict[str, Any] | None = None,
        resume: Literal["auto", "strict", "never"] = "auto", workers: int | None = None) -> TrainState:
    """Fine-tune ``model`` per ``card`` on the engine's loop; resumes from ``work_dir/last.pt``
    when it holds a checkpoint of the same ``identity`` (``resume="never"``: from scratch)."""
    s = card.schedule
    iters_per_epoch = max(len(train_ds) // s.batch_size, 1)
    total = s.epochs * iters_per_epoch if s.max_iters is None else min(s.max_iters, s.epochs * iters_per_epoch)
    epochs = -(-total // iters_per_epoch)
    model.to(device)
    optimizer = build_optimizer(model, card)
    scheduler = build_scheduler(optimizer, card, iters_per_epoch, total)
    loop = TrainLoop(name=card.name, label=f"train {card.name}", total=total, iters_per_epoch=iters_per_epoch,
                     global_batch=s.batch_size, seed=seed, checkpoint=work_dir / "last.pt",
                     identity=identity or {}, resume=resume, checkpoint_every=checkpoint_every,
                     clip_grad=card.optim.clip_grad, workers=workers)
    ddp_model = D.wrap(model, device)
    model.train()
    hooks = [lambda st: on_step(st.step)] if on_step is not None else []
    state = train_loop(loop, model, lambda batch, step: adapter.loss(ddp_model, batch), optimizer, scheduler, train_ds,
                       order=lambda epoch: epoch_order(train_ds, adapter, card, seed, epoch),
                       collate=adapter.collate, device=device, progress=progress,
                       clip_params=list(model.parameters()), on_step=hooks)
    state.epoch = epochs
    return state


@torch.no_grad()
def predict_split(adapter: TaskAdapter, model: nn.Module, card: TaskCard, eval_ds: Dataset, *,
                  device: torch.device, progress: Progress, workers: int | None = None) -> list[dict]:
    """Predictions for every eval sample, gathered from all ranks exactly once, in index order."""
    model.to(device).eval()
    world, rank = D.world_size(), D.rank()
    mine = list(range(rank, len(eval_ds), world))  # disjoint shards: no padding, no duplicates
    bs = card.eval.batch_size
    batches = [mine[i:i + bs] for i in range(0, len(mine), bs)]
    loader = make_loader(eval_ds, batches, adapter.collate, device=device,
                         workers=loader_workers(workers, accelerator=device.type != "cpu"))
    task = progress.task(f"eval  {card.name}", total=len(eval_ds), unit="img", per_step=1)
    preds: list[dict] = []
    precision = precision_for(device, training=False)
    for batch in loader:
        batch = to_device(batch, device)
        with precision.autocast():
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
