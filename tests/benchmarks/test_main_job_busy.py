"""The busy-neighbour main-job benchmark runs end to end in its ``--tiny`` mode (no timing is
asserted), and an interrupted run leaves no busy loop and no job process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "main_job_busy.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # spinning threads on a busy box

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process groups, /proc")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM first: the benchmark then kills its neighbours and its job itself."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _procs_with(text: str) -> list[int]:
    """Pids of live processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def test_main_job_busy_tiny(tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--tiny", "--keep", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV)
    try:
        out, err = proc.communicate(timeout=900)  # ~40 s on 2 cores; minutes when other jobs load them
    finally:
        _stop(proc)
    assert proc.returncode == 0, out + err
    for line in ("alone ", "busy neighbour ", "ratio busy/alone: CPU", "goal (alone <= 300 s wall",
                 "metrics identical in both runs (1 record(s))"):
        assert line in out, out
    # both runs wrote their record, and the job's own wall/CPU line was read from its output
    assert (tmp_path / "res-idle").is_dir() and (tmp_path / "res-busy").is_dir()
    assert out.count("job says: 1 run(s), 0 failed: wall") == 2, out
    assert not _procs_with(f"hcbench busy neighbour of {proc.pid}")


def _default_sigint() -> None:
    # a shell starts background jobs (`cmd &`, as CI may run pytest) with SIGINT ignored, which
    # the child inherits and Python then keeps: restore it, as a terminal's Ctrl-C would find it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_stops_neighbours_and_job(tmp_path):
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--tiny", "--busy-first", "--keep", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=ENV,
                            preexec_fn=_default_sigint)
    marker = f"hcbench busy neighbour of {proc.pid}"
    try:
        deadline = time.monotonic() + 600
        # wait until the neighbours spin and the job (its command line names our folder) runs
        while not (_procs_with(marker) and _procs_with(str(tmp_path / "res-busy"))):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the neighbours or the job never started"
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        _stop(proc)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    deadline = time.monotonic() + 10
    while (_procs_with(marker) or _procs_with(str(tmp_path / "res-busy"))) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _procs_with(marker), "a busy neighbour outlived the benchmark"
    assert not _procs_with(str(tmp_path / "res-busy")), "the job outlived the benchmark"
