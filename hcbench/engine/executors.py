"""Executors that run a list of runs: ``local`` (in this process, or a process pool with
``jobs > 1``) and ``slurm`` (submitit job arrays; requeued on preemption or timeout, each job
resuming from its own checkpoint because a run always resumes from ``<work_dir>/last.pt``).

``jobs=None`` (auto) runs a CPU suite as a pool of one run per core: the small models of a smoke
suite use two intra-op threads poorly, so on 2 cores two one-thread runs side by side finished
the seven-card smoke suite in 259 s against 394-424 s for one two-thread run after the other
(issue 18). A GPU, ``torchrun`` and a single run stay in this process. The pool starts the runs
it has no timing for first, then the rest longest first by the CPU time of an earlier record of
the same card and tier under ``--out`` (any backbone or seed), so that a long card does not start
last while the other cores idle (317 s when the Fashionpedia card, the longest, started last).

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
from hcbench.registry import include, included
from hcbench.results.store import RecordError, iter_record_files, read_record


@dataclass
class ExecutorConfig:
    kind: Literal["local", "slurm"] = "local"
    jobs: int | None = None  # local: runs in parallel processes (None: see resolve_jobs); slurm: array parallelism
    work_dir: Path = Path("runs")  # slurm: job logs go to <work_dir>/slurm/<job id>
    slurm_partition: str | None = None
    slurm_time: int = 24 * 60  # minutes
    slurm_gpus: int = 1


def resolve_jobs(config: ExecutorConfig, specs: list[RunSpec]) -> int:
    """The number of runs at once: ``config.jobs`` when given; else, for the local executor, one
    run per usable core when every run is on the CPU and this is not a ``torchrun`` rank (each
    run then gets an equal share of the cores), otherwise one. A Slurm array defaults to one."""
    if config.jobs is not None:
        if config.jobs < 1:
            raise ConfigError(f"--jobs {config.jobs}: need at least 1")
        return config.jobs
    if config.kind != "local" or len(specs) < 2 or D.launched():
        return 1
    if any(pick_device(s.device).type != "cpu" for s in specs):
        return 1
    return min(len(specs), usable_cores())


def _card_name(spec: RunSpec) -> str:
    # a card file's name is its file name (hcbench.cards checks it), which its records carry
    return Path(spec.card).stem if spec.card.endswith((".yaml", ".yml")) else spec.card


def earlier_cpu_s(specs: list[RunSpec]) -> dict[tuple[str, str], float]:
    """CPU seconds of the newest finished record of each (card, tier) of ``specs`` found under
    their ``out`` folders, any backbone or seed. A hint for ordering, so unreadable records are skipped."""
    wanted = {(_card_name(s), s.tier) for s in specs}
    newest: dict[tuple[str, str], tuple[str, float]] = {}
    for out in {Path(s.out) for s in specs}:
        if not out.is_dir():
            continue
        for path in iter_record_files(out):
            try:
                rec = read_record(path)
            except RecordError:
                continue
            key = (rec.card.name, rec.card.tier)
            if key in wanted and rec.status == "ok" and rec.run.started >= newest.get(key, ("", 0.0))[0]:
                newest[key] = (rec.run.started, rec.run.cpu_s if rec.run.cpu_s is not None else rec.run.wall_s)
    return {k: cpu for k, (_, cpu) in newest.items()}


def start_order(specs: list[RunSpec]) -> list[RunSpec]:
    """Runs without an earlier record first (in the listed order: their cost is unknown, so they
    must not end up last), then the others longest first."""
    cost = earlier_cpu_s(specs)
    known = {i: cost.get((_card_name(s), s.tier)) for i, s in enumerate(specs)}
    order = sorted(range(len(specs)), key=lambda i: (known[i] is not None, -(known[i] or 0.0), i))
    return [specs[i] for i in order]


def _run_in_child(spec: RunSpec, cores: int | None = None, includes: tuple[str, ...] = ()) -> bool:
    # a fresh process knows only the built-in plugins: import the user's --include files again
    for path in includes:
        include(path)
    # a pool of N runs shares the machine: each child keeps to its share of the cores
    set_cpu_budget(cores)
    return run_or_record_failure(spec, Progress(plain=True))


class SlurmRun:
    """A submitit-callable run. ``checkpoint`` makes submitit requeue it on preemption/timeout;
    the requeued job resumes from the run's last training checkpoint."""

    def __init__(self, spec: RunSpec, includes: tuple[str, ...] = ()):
        self.spec, self.includes = spec, includes

    def __call__(self) -> bool:
        return _run_in_child(self.spec, includes=self.includes)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SlurmRun(self.spec, self.includes))


def run_local(specs: list[RunSpec], progress: Progress) -> int:
    """Every run in this process, one after the other (torchrun ranks run them together)."""
    if specs:
        D.init(pick_device(specs[0].device).type)
    failures = 0
    for k, spec in enumerate(specs, 1):
        name = _card_name(spec)
        progress.log(f"card {k}/{len(specs)}: {name} [{spec.tier}, seed {spec.seed}] with {spec.backbone}")
        failures += not run_or_record_failure(spec, progress)
    return failures


def run_local_pool(specs: list[RunSpec], jobs: int, progress: Progress) -> int:
    """``jobs`` runs at a time in spawned processes, each on its share of the cores. An interrupt
    (Ctrl-C) or any error here stops the pool: queued runs never start and running ones are
    terminated (each resumes from its last checkpoint next time)."""
    failures = 0
    jobs = min(jobs, len(specs))
    share = max(1, usable_cores() // jobs)
    ordered = start_order(specs)
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(_run_in_child, s, share, included()): s for s in ordered}
        progress.log(f"{len(specs)} card(s) on {jobs} parallel runs of {share} thread(s) each; starting "
                     f"{', '.join(_card_name(s) for s in ordered)}")
        for k, fut in enumerate(as_completed(futures), 1):
            try:
                ok = fut.result()
            except Exception as e:  # the child died before it could write a failure record
                progress.log(f"run {futures[fut].card} crashed: {type(e).__name__}: {e}")
                ok = False
            failures += not ok
            progress.log(f"card {k}/{len(specs)} finished: {futures[fut].card} ({'ok' if ok else 'FAILED'})")
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown()
    return failures


def _stop(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and terminate the running ones. A pool process survives a
    KeyboardInterrupt in its run (it reports it and takes the next one) and a shutdown waits
    for it, so the processes are terminated, not joined."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14: shuts down, cancels, terminates
        pool.terminate_workers()
        return
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(timeout=10)


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
        params.update(slurm_partition=config.slurm_partition, slurm_array_parallelism=resolve_jobs(config, specs))
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    # absolute paths: jobs start in another working directory
    specs = [replace(s, out=Path(s.out).resolve(), work_dir=Path(s.work_dir).resolve(),
                     synth_dir=Path(s.synth_dir).resolve(), root=Path(s.root).resolve() if s.root else None)
             for s in specs]
    with executor.batch():
        jobs = [executor.submit(SlurmRun(s, included())) for s in specs]
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
    jobs = resolve_jobs(config, specs)
    if jobs > 1 and len(specs) > 1:
        return run_local_pool(specs, jobs, progress)
    return run_local(specs, progress)
