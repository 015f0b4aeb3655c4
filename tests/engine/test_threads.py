"""No oversubscription: torch threads x (1 + DataLoader workers) <= the cores the process may use,
workers run one torch thread, and CPU time counts the workers."""

from __future__ import annotations

import os

import pytest
import torch

from hcbench.engine import threads as T
from hcbench.engine.loops import make_loader


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    T.set_cpu_budget(None)


def test_usable_cores_follow_the_affinity_mask_and_the_budget(restore_threads, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    assert T.usable_cores() == 6
    T.set_cpu_budget(2)  # an executor running 3 runs at once on 6 cores
    assert T.usable_cores() == 2
    T.set_cpu_budget(None)
    assert T.usable_cores() == 6
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: two ranks on this node share the cores
    assert T.usable_cores() == 3


@pytest.mark.parametrize("cores,workers", [(1, 0), (2, 0), (4, 1), (8, 2), (16, 4), (64, 4)])
def test_default_workers_by_cores(cores, workers):
    assert T.default_workers(cores) == workers


@pytest.mark.parametrize("cores", [1, 2, 3, 4, 8, 16])
@pytest.mark.parametrize("requested", [None, 0, 1, 3, 8])
def test_threads_times_processes_never_exceed_the_cores(restore_threads, monkeypatch, cores, requested):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.delenv("HCBENCH_WORKERS", raising=False)
    torch.set_num_threads(cores)  # torch's own default: one per core
    workers = T.loader_workers(requested)
    threads = T.configure_threads(workers)
    assert threads == torch.get_num_threads() >= 1
    assert threads * (1 + workers) <= cores
    if requested is not None:
        assert workers == min(requested, cores - 1)


def test_an_explicit_lower_thread_count_is_kept(restore_threads, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    torch.set_num_threads(1)  # e.g. OMP_NUM_THREADS=1
    assert T.configure_threads(0) == 1


def test_env_override_of_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setenv("HCBENCH_WORKERS", "3")
    assert T.loader_workers() == 3


class _ThreadsSeen(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.tensor([torch.get_num_threads(), os.getpid()])


def test_workers_run_one_thread_and_their_cpu_time_is_counted(restore_threads):
    loader = make_loader(_ThreadsSeen(), [[0, 1], [2, 3]], torch.stack, workers=1, device=torch.device("cpu"))
    assert loader.worker_init_fn is T.worker_init
    before = os.times()
    seen = torch.cat(list(loader))
    after = os.times()
    assert seen[:, 0].tolist() == [1, 1, 1, 1] and (seen[:, 1] != os.getpid()).all()
    # the worker was reaped, so its CPU time shows in the children's times cpu_seconds() adds
    assert after.children_user + after.children_system >= before.children_user + before.children_system
    assert T.cpu_seconds() >= after.user + after.system


def _omp_env_at_torch_import(env: dict[str, str]) -> str:
    """What torch's OpenMP runtime read at load, as it prints it itself (``OMP_DISPLAY_ENV``)."""
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, **env, "OMP_DISPLAY_ENV": "TRUE"}
    proc = subprocess.run([sys.executable, "-c", "import hcbench, torch; torch.ones(64, 64) @ torch.ones(64, 64)"],
                          env=env, capture_output=True, text=True, check=True, timeout=120)
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("given,expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_openmp_threads_wait_passively_unless_the_user_says_otherwise(given, expected):
    # spinning OpenMP threads tripled the CPU time of a card next to a busy neighbour (issue 18);
    # importing hcbench before torch makes them sleep, an explicit OMP_WAIT_POLICY is kept
    shown = _omp_env_at_torch_import({} if given is None else {"OMP_WAIT_POLICY": given})
    if "OMP_WAIT_POLICY" not in shown:
        pytest.skip("this torch build's OpenMP runtime does not print its settings (OMP_DISPLAY_ENV)")
    assert f"OMP_WAIT_POLICY = '{expected}'" in shown
