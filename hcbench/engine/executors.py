"""Executors that run a suite's runs: ``local`` (in-process, or a process pool with ``--jobs``)
and ``slurm`` (submitit job arrays; requeued on preemption or timeout, each job resuming from
its own checkpoint because a run always resumes from ``<work_dir>/last.pt``).

A failed run leaves a failure record carrying its error and the suite continues.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

from hcbench.engine.runner import RunSpec


def _run_in_child(spec: RunSpec) -> bool:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hcbench.engine.progress import Progress
    from hcbench.engine.runner import run_or_record_failure

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


def run_local_pool(specs: list[RunSpec], jobs: int) -> int:
    failures = 0
    with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(_run_in_child, s): s for s in specs}
        for fut in as_completed(futures):
            try:
                ok = fut.result()
            except Exception as e:  # the child died before it could write a failure record
                print(f"run {futures[fut].card} crashed: {e}")
                ok = False
            failures += not ok
    return failures


def run_slurm(specs: list[RunSpec], args) -> int:
    try:
        import submitit
    except ImportError as e:
        raise RuntimeError("--executor slurm needs submitit: pip install 'hcbench[slurm]'") from e
    folder = Path(args.work_dir) / "slurm" / "%j"
    cluster = os.environ.get("HCBENCH_SUBMITIT_CLUSTER")  # "local"/"debug" for testing without Slurm
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    params = {"timeout_min": args.slurm_time, "gpus_per_node": args.slurm_gpus, "tasks_per_node": 1,
              "cpus_per_task": 8 if args.slurm_gpus else 2, "name": "hcbench"}
    if executor.cluster == "slurm":
        params.update(slurm_partition=args.slurm_partition, slurm_array_parallelism=max(args.jobs, 1))
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    # absolute paths: jobs start in another working directory
    specs = [replace(s, out=Path(s.out).resolve(), work_dir=Path(s.work_dir).resolve(),
                     synth_dir=Path(s.synth_dir).resolve(), root=Path(s.root).resolve() if s.root else None)
             for s in specs]
    with executor.batch():
        jobs = [executor.submit(SlurmRun(s)) for s in specs]
    print(f"submitted {len(jobs)} job(s): {', '.join(j.job_id for j in jobs)} (logs in {folder.parent})")
    failures = 0
    for job, spec in zip(jobs, specs, strict=True):
        try:
            failures += not job.result()
        except Exception as e:
            print(f"job {job.job_id} ({spec.card}) failed: {e}")
            failures += 1
    return failures


def run_specs(specs: list[RunSpec], args) -> int:
    if args.executor == "slurm":
        return run_slurm(specs, args)
    return run_local_pool(specs, args.jobs)
