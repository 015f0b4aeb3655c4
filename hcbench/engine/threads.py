"""CPU threads and DataLoader workers without oversubscription.

A process may use the cores in its affinity mask (``os.sched_getaffinity``; a Slurm or
container limit shows there), or fewer when an executor runs several runs side by side
(:func:`set_cpu_budget`). Torch's intra-op threads times (1 + DataLoader workers) never exceed
that budget, and every worker runs one torch thread: on a busy machine, threads beyond the
free cores spin and wait on each other, multiplying the CPU time of the same work.

Default workers, measured on 2 cores (issue 18): one worker made ``fit()`` ~13 % slower per
step than none, so up to 2 cores the main process loads the data itself; above that a quarter
of the cores (at most 4) load data and the rest compute.
"""

from __future__ import annotations

import os

import torch

_budget: int | None = None


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, shared with the other ranks ``torchrun``
    started on this node (``LOCAL_WORLD_SIZE``), or the budget an executor set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    cores //= max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(cores, _budget) if _budget else cores)


def set_cpu_budget(cores: int | None) -> None:
    """Limit this process to ``cores`` (an executor running N runs at once gives each 1/N)."""
    global _budget
    _budget = max(1, int(cores)) if cores else None


def default_workers(cores: int | None = None) -> int:
    cores = usable_cores() if cores is None else cores
    return 0 if cores <= 2 else min(4, cores // 4)


def loader_workers(requested: int | None = None, *, accelerator: bool = False) -> int:
    """``requested`` if given, else ``$HCBENCH_WORKERS``, else :func:`default_workers` -- or, when the
    model runs on an ``accelerator`` (GPU), every usable core but the main process's: a GPU
    training ViT-B pose takes ~1,500 samples/s, several cores' worth of augmentation (issue 18,
    ``benchmarks/pipeline.py``). Never more workers than leave the main process a core."""
    if requested is None:
        env = os.environ.get("HCBENCH_WORKERS")
        requested = int(env) if env else (usable_cores() - 1 if accelerator else default_workers())
    return max(0, min(int(requested), usable_cores() - 1))


def configure_threads(workers: int) -> int:
    """Set torch's intra-op threads so that threads x (1 + workers) <= usable cores; only ever
    lowers the count (an explicit ``OMP_NUM_THREADS``/``torch.set_num_threads`` is kept when
    smaller). Returns the thread count."""
    threads = max(1, min(torch.get_num_threads(), usable_cores() // (1 + max(workers, 0))))
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one torch thread per worker process."""
    torch.set_num_threads(1)


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (DataLoader workers, pool jobs)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
