"""Executors that run a list of runs: ``local`` (in this process, or a process pool with
``jobs > 1``) and ``slurm`` (submitit job arrays; requeued on preemption or timeout, each job
resuming from its own checkpoint because a run always resumes from ``<work_dir>/last.pt``).

A failed run leaves a failure record carrying its error and the others go on. The command
line builds the :class:`~hcbench.engine.spec.RunSpec` list and an :class:`ExecutorConfig`;
this module imports the runner, never the other way round.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

from hcbench.engine import distributed as D
from hcbench.engine.device import pick_device
from hcbench.engine.progress import Progress
from hcbench.engine.runner import run_or_record_failure
from hcbench.engine.spec import RunSpec
from hcbench.engine.threads import set_cpu_budget, usable_cores
from hcbench.errors import ConfigError


@dataclass
class ExecutorConfig:
    kind: Literal["local", "slurm"] = "local"
    jobs: int = 1  # local: runs in parallel processes; slurm: array parallelism
    work_dir: Path = Path("runs")  # slurm: job logs go to <work_dir>/slurm/<job id>
    slurm_partition: str | None = None
    slurm_time: int = 24 * 60  # minutes
    slurm_gpus: int = 1


def _run_in_child(spec: RunSpec, cores: int | None = None) -> bool:
    # a pool of N runs shares the machine: each child keeps to its share of the cores
    set_cpu_budget(cores)
    return run_or_record_failure(spec, Progress(plain=True))


class SlurmRun:
    """A submitit-callable run. ``checkpoint`` makes submitit requeue it on preemption/timeout;
    the requeued job resumes from the run's last training checkpoint."""

    def __init__(self, spec: RunSpec):
        self.spec = spec

    def __call__(self) -> bool:
        return _run_in_child(self.spec)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmRun(self.spec))


def run_local(specs: list[RunSpec], progress: Progress) -> int:
    """Every run in this process, one after the other (torchrun ranks run them together)."""
    if specs:
        D.init(pick_device(specs[0].device).type)
    failures = 0
    for k, spec in enumerate(specs, 1):
        name = Path(spec.card).stem if spec.card.endswith((".yaml", ".yml")) else spec.card  # a card file
        progress.log(f"card {k}/{len(specs)}: {name} [{spec.tier}, seed {spec.seed}] with {spec.backbone}")
        failures += not run_or_record_failure(spec, progress)
    return failures


def run_local_pool(specs: list[RunSpec], jobs: int, progress: Progress) -> int:
    failures = 0
    share = max(1, usable_cores() // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_child, s, share): s for s in specs}
        progress.log(f"{len(specs)} card(s) on {jobs} parallel runs")
        for k, fut in enumerate(as_completed(futures), 1):
            try:
                ok = fut.result()
            except Exception as e:  # the child died before it could write a failure record
                progress.log(f"run {futures[fut].card} crashed: {type(e).__name__}: {e}")
                ok = False
            failures += not ok
            progress.log(f"card {k}/{len(specs)} finished: {futures[fut].card} ({'ok' if ok else 'FAILED'})")
    return failures


def run_slurm(specs: list[RunSpec], config: ExecutorConfig, progress: Progress) -> int:
    try:
        import submitit
    except ImportError as e:
        raise ConfigError("--executor slurm needs submitit: pip install 'hcbench[slurm]'") from e
    folder = Path(config.work_dir) / "slurm" / "%j"
    cluster = os.environ.get("HCBENCH_SUBMITIT_CLUSTER")  # "local"/"debug" for testing without Slurm
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": config.slurm_time, "gpus_per_node": config.slurm_gpus, "tasks_per_node": 1,
              "cpus_per_task": 8 if config.slurm_gpus else 2, "name": "hcbench"}
    if executor.cluster == "slurm":
        params.update(slurm_partition=config.slurm_partition, slurm_array_parallelism=max(config.jobs, 1))
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    # absolute paths: jobs start in another working directory
    specs = [replace(s, out=Path(s.out).resolve(), work_dir=Path(s.work_dir).resolve(),
                     synth_dir=Path(s.synth_dir).resolve(), root=Path(s.root).resolve() if s.root else None)
             for s in specs]
    with executor.batch():
        jobs = [executor.submit(SlurmRun(s)) for s in specs]
    progress.log(f"submitted {len(jobs)} job(s): {', '.join(j.job_id for j in jobs)} (logs in {folder.parent})")
    failures = 0
    for job, spec in zip(jobs, specs, strict=True):
        try:
            failures += not job.result()
        except Exception as e:
            progress.log(f"job {job.job_id} ({spec.card}) failed: {type(e).__name__}: {e}")
            failures += 1
    return failures


def run_specs(specs: list[RunSpec], config: ExecutorConfig, progress: Progress) -> int:
    """Run ``specs`` on the configured executor; returns the number of failed runs."""
    if config.kind == "slurm":
        return run_slurm(specs, config, progress)
    if config.jobs > 1:
        return run_local_pool(specs, config.jobs, progress)
    return run_local(specs, progress)
