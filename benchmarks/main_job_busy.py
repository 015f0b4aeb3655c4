"""The README's main job alone and next to a busy neighbour: wall and CPU time of both runs.

    python benchmarks/main_job_busy.py           # the smoke suite (`hcbench run --backbone vit_tiny --suite smoke`)
    python benchmarks/main_job_busy.py --card synth_attr   # some of the smoke suite's cards (smoke tier)
    python benchmarks/main_job_busy.py --tiny    # one attribute card for one epoch; seconds, what CI runs

Issue 18's goal: the smoke main job takes <= 5 min wall on 2 idle cores, and <= 1.5x its idle CPU
time while another process keeps every core busy. Threads that outnumber the free cores spin and
wait on each other, so an oversubscribed job burns far more CPU for the same work on a loaded
machine; a job that sizes its threads to its cores only loses wall time there.

The script generates the synthetic datasets once (timed apart), then runs ``hcbench run`` twice
into fresh result/work folders under a temporary directory: once alone, once while one pure-Python
busy loop per usable core (``os.sched_getaffinity``) spins at the same priority. CPU time is the
job's and its reaped children's (DataLoader workers) from ``os.wait4``. The neighbours and the job
run in their own process groups and are killed whatever happens (error, Ctrl-C). Both runs use the
same seed, so their metrics must be identical; the script exits non-zero when they differ.

The figures mean something only on an otherwise idle machine: other jobs load the "alone" run too.
``hcbench run`` keeps the caller's environment: run this without ``OMP_NUM_THREADS`` and
``OMP_WAIT_POLICY`` to measure what a user gets (the header prints both; importing hcbench sets
``OMP_WAIT_POLICY=PASSIVE`` when it is unset, see ``hcbench/__init__.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GOAL_WALL_S = 300.0
GOAL_CPU_RATIO = 1.5
# the marker lets a test find leftovers; a neighbour whose benchmark died (even by SIGKILL, which
# leaves no chance to clean up) is re-parented and stops within a few milliseconds
SPIN = """# hcbench busy neighbour of {parent}
import os
while os.getppid() == {parent}:
    for _ in range(100_000):
        pass
"""


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    load: tuple[float, float, float]
    reported: str  # the job's own "wall X s, CPU Y s" line


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Signal ``proc``'s whole process group (it leads its own session), ignoring one that is gone."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _reap(proc: subprocess.Popen, timeout: float = 10.0) -> float:
    """Wait for ``proc`` (already signalled; SIGKILL after ``timeout`` s) and return its CPU seconds."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return _cpu(ru)
        if time.monotonic() > deadline:
            _kill_group(proc)
        time.sleep(0.05)


class Neighbours:
    """``n`` busy loops, each in its own process group; stopped (SIGKILL to the group) on exit."""

    def __init__(self, n: int):
        self.n = n
        self.procs: list[subprocess.Popen] = []
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def __enter__(self) -> Neighbours:
        self.t0 = time.perf_counter()
        try:
            for _ in range(self.n):
                self.procs.append(subprocess.Popen([sys.executable, "-c", SPIN.format(parent=os.getpid())],
                                                   start_new_session=True, stdin=subprocess.DEVNULL))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        time.sleep(0.5)  # let them take the cores before the job starts
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            _kill_group(p)
        for p in self.procs:
            if p.returncode is None:
                self.cpu_s += _reap(p)
        self.wall_s = time.perf_counter() - self.t0
        self.procs = []


def run_job(cmd: list[str], log: Path, env: dict[str, str]) -> Timing:
    """Run ``cmd`` in its own process group; its output goes to ``log``. Raises on a failed job."""
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=log.parent, env=env, start_new_session=True)
        try:
            _, status, ru = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:  # interrupted: the job and its loader workers go too
                _kill_group(proc, signal.SIGTERM)
                _reap(proc)
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    text = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"the job failed (exit {proc.returncode}): {' '.join(cmd)}\n" + text[-4000:])
    reported = next((line.strip() for line in text.splitlines() if " failed: wall " in line), "")
    return Timing(wall, _cpu(ru), tuple(max(a, b) for a, b in zip(load0, load1, strict=True)), reported)


def metrics(out: Path) -> dict[str, dict]:
    """Record path (relative to ``out``) -> metrics, for every record under ``out``."""
    recs = {}
    for path in sorted(out.rglob("*.json")):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "metrics" in data:
            recs[path.relative_to(out).as_posix()] = data["metrics"]
    return recs


def tiny_card(tmp: Path) -> Path:
    """The synthetic attribute card for one epoch: the whole path of the main job in seconds."""
    data = yaml.safe_load((REPO / "tasks" / "synth_attr.yaml").read_text())
    data["name"] = "tiny_attr"
    data["schedule"] = {**data["schedule"], "epochs": 1, "warmup_iters": 2}
    data["tiers"] = {"smoke": {"epochs": 1}, "quick": {"epochs": 1}}
    path = tmp / "tiny_attr.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="one attribute card, one epoch (seconds)")
    ap.add_argument("--card", action="append", default=[], help="run this smoke card (repeatable) instead of "
                    "the whole suite, at the smoke tier")
    ap.add_argument("--neighbours", type=int, default=None, help="busy loops (default: one per usable core)")
    ap.add_argument("--keep", type=Path, default=None, help="work here and keep the folders and logs")
    ap.add_argument("--busy-first", action="store_true", help="run next to the neighbours first, then alone")
    args = ap.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the neighbours and the job are killed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    # Ctrl-C always interrupts (and cleans up), also when started from a shell's background job,
    # which hands SIGINT over ignored: the busy loops must never outlive the benchmark
    signal.signal(signal.SIGINT, signal.default_int_handler)

    cores = usable_cores()
    n_busy = cores if args.neighbours is None else args.neighbours
    tmp_ctx = tempfile.TemporaryDirectory(prefix="hcbench-busy-") if args.keep is None else None
    tmp = Path(tmp_ctx.name) if tmp_ctx else args.keep.resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    hcbench = [sys.executable, "-m", "hcbench.cli"]
    try:
        suite = yaml.safe_load((REPO / "tasks" / "suites" / "smoke.yaml").read_text())
        if args.tiny:
            target, cards = ["--card", str(tiny_card(tmp)), "--tier", "smoke"], ["synth_attr"]
        elif args.card:
            unknown = sorted(set(args.card) - set(suite["cards"]))
            if unknown:
                ap.error(f"not smoke cards: {', '.join(unknown)} (choose from {', '.join(suite['cards'])})")
            target, cards = [*(a for c in args.card for a in ("--card", c)), "--tier", "smoke"], args.card
        else:
            target, cards = ["--suite", "smoke"], suite["cards"]
        card_yaml = [yaml.safe_load((REPO / "tasks" / f"{c}.yaml").read_text()) for c in cards]
        datasets = ",".join(dict.fromkeys(c["dataset"]["name"] for c in card_yaml))
        what = "tiny: one card, one epoch" if args.tiny else ("cards " + ", ".join(args.card) if args.card
                                                              else "the smoke suite")
        print(f"main job ({what}) on {cores} usable core(s); "
              f"{n_busy} busy neighbour(s); OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; "
              f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset (hcbench sets PASSIVE)')}; "
              f"nice {os.nice(0)}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        synth = tmp / "synth"
        t0 = time.perf_counter()
        subprocess.run([*hcbench, "data", "synth", "--out", str(synth), "--datasets", datasets], check=True,
                       env=env, cwd=tmp, stdout=subprocess.DEVNULL)
        print(f"synthetic data ({datasets}): {time.perf_counter() - t0:.1f} s wall, generated once for both runs")

        def job(tag: str) -> list[str]:
            return [*hcbench, "--quiet", "run", "--backbone", "vit_tiny", *target, "--synth", str(synth),
                    "--out", str(tmp / f"res-{tag}"), "--work-dir", str(tmp / f"work-{tag}"), "--device", "cpu"]

        if not args.busy_first:
            idle = run_job(job("idle"), tmp / "idle.log", env)
        with Neighbours(n_busy) as nb:
            busy = run_job(job("busy"), tmp / "busy.log", env)
        if args.busy_first:
            idle = run_job(job("idle"), tmp / "idle.log", env)
        for tag, t in (("alone", idle), ("busy neighbour", busy)):
            print(f"{tag:15s} wall {t.wall_s:7.1f} s  CPU {t.cpu_s:7.1f} s  (load average <= "
                  f"{' '.join(f'{x:.2f}' for x in t.load)}; job says: {t.reported or 'nothing'})")
        print(f"neighbours: {nb.cpu_s:.1f} CPU-s over {nb.wall_s:.1f} s wall "
              f"({nb.cpu_s / max(nb.wall_s, 1e-9):.2f} cores kept busy)")
        ratio = busy.cpu_s / max(idle.cpu_s, 1e-9)
        print(f"ratio busy/alone: CPU {ratio:.2f}x (goal <= {GOAL_CPU_RATIO}x), wall "
              f"{busy.wall_s / max(idle.wall_s, 1e-9):.2f}x")
        ok = idle.wall_s <= GOAL_WALL_S and ratio <= GOAL_CPU_RATIO
        scope = " (the goal is for the whole smoke suite)" if args.tiny or args.card else ""
        print(f"goal (alone <= {GOAL_WALL_S:.0f} s wall, busy <= {GOAL_CPU_RATIO}x alone CPU): "
              f"{'met' if ok else 'NOT met'}{scope}")

        m_idle, m_busy = metrics(tmp / "res-idle"), metrics(tmp / "res-busy")
        if not m_idle or m_idle != m_busy:
            print(f"metrics DIFFER between the runs: alone {m_idle} / busy {m_busy}")
            return 1
        print(f"metrics identical in both runs ({len(m_idle)} record(s))")
        return 0
    except KeyboardInterrupt:
        print("interrupted: the job and the neighbours were stopped", file=sys.stderr)
        return 130
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()


if __name__ == "__main__":
    sys.exit(main())
