"""The local executor's defaults: how many runs go at once, in which order they start, that a
pool run (a fresh process) knows the user's ``--include`` plugins, and that an interrupt stops
the whole pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hcbench.engine import executors as X
from hcbench.engine.spec import RunSpec
from hcbench.errors import ConfigError
from hcbench.results.store import iter_record_files

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "docs" / "examples" / "toy_family.py"
CARD = REPO / "docs" / "examples" / "toy_bright.yaml"


def _specs(n: int, **kw) -> list[RunSpec]:
    return [RunSpec(backbone="vit_tiny", card=f"card_{k}", tier="smoke", **kw) for k in range(n)]


@pytest.fixture
def cores(monkeypatch):
    def set_cores(n: int) -> None:
        monkeypatch.setattr(X, "usable_cores", lambda: n)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return set_cores


def test_cpu_runs_default_to_one_run_per_core(cores):
    cores(2)
    assert X.resolve_jobs(X.ExecutorConfig(), _specs(7, device="cpu")) == 2
    cores(16)
    assert X.resolve_jobs(X.ExecutorConfig(), _specs(7, device="cpu")) == 7  # never more runs than there are
    assert X.resolve_jobs(X.ExecutorConfig(), _specs(1, device="cpu")) == 1  # one run stays in this process


def test_gpu_torchrun_slurm_and_explicit_jobs(cores, monkeypatch):
    cores(16)
    assert X.resolve_jobs(X.ExecutorConfig(), _specs(3, device="cuda")) == 1  # one GPU: one run at a time
    assert X.resolve_jobs(X.ExecutorConfig(kind="slurm"), _specs(3, device="cpu")) == 1
    assert X.resolve_jobs(X.ExecutorConfig(jobs=3), _specs(5, device="cuda")) == 3  # the user's number wins
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun rank runs the suite together with the others
    assert X.resolve_jobs(X.ExecutorConfig(), _specs(3, device="cpu")) == 1
    with pytest.raises(ConfigError, match="--jobs 0"):
        X.resolve_jobs(X.ExecutorConfig(jobs=0), _specs(3, device="cpu"))


TEMPLATE = REPO / "results" / "student-recipe" / "recipe" / "vit_tiny" / "synth_attr.smoke.json"  # a real record


def _record(out: Path, backbone: str, card: str, tier: str, cpu_s: float, started: str, status: str = "ok") -> None:
    rec = json.loads(TEMPLATE.read_text())
    rec["card"].update(name=card, tier=tier)
    rec["run"].update(cpu_s=cpu_s, wall_s=cpu_s / 2, started=started)
    rec.update(status=status, error="RuntimeError: boom" if status == "failed" else None)
    path = out / "smoke" / backbone / f"{card}.{tier}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_pool_starts_unknown_runs_first_then_the_longest(tmp_path: Path):
    out = tmp_path / "results"
    specs = [RunSpec(backbone="vit_small", card=c, tier="smoke", out=out)
             for c in ("short", "fresh_a", "long", "middle", "fresh_b")]
    _record(out, "vit_tiny", "short", "smoke", 40.0, "2026-12-01T10:00:00Z")
    _record(out, "vit_tiny", "long", "smoke", 500.0, "2026-12-01T10:00:00Z")
    _record(out, "student-x", "middle", "smoke", 900.0, "2026-11-01T10:00:00Z")  # older: the newer one counts
    _record(out, "vit_base", "middle", "smoke", 100.0, "2026-12-01T10:00:00Z")
    _record(out, "vit_base", "fresh_a", "smoke", 2000.0, "2026-12-01T10:00:00Z", status="failed")  # no timing
    _record(out, "vit_base", "fresh_b", "full", 3000.0, "2026-12-01T10:00:00Z")  # another tier
    (out / "smoke" / "vit_base" / "broken.smoke.json").write_text("{not json")  # a hint: skipped, no error
    assert X.earlier_cpu_s(specs) == {("short", "smoke"): 40.0, ("long", "smoke"): 500.0, ("middle", "smoke"): 100.0}
    assert [s.card for s in X.start_order(specs)] == ["fresh_a", "fresh_b", "long", "middle", "short"]
    # nothing earlier: the listed order
    assert [s.card for s in X.start_order(_specs(3, out=tmp_path / "none"))] == ["card_0", "card_1", "card_2"]


def test_a_pool_run_imports_the_include_files_again(tmp_path: Path):
    """The example plugin's backbone, family and card exist only through --include: each pool
    process must import it again, or its runs crash on a card of an unknown family (they did
    before the executor passed the files on). Two spawned processes: ~20 s on 2 cores."""
    card2 = tmp_path / "toy_bright2.yaml"
    card2.write_text(CARD.read_text().replace("name: toy_bright", "name: toy_bright2"))
    env = {**os.environ, "HCBENCH_WORKERS": "0"}
    cli = [sys.executable, "-m", "hcbench.cli", "--include", str(PLUGIN)]
    r = subprocess.run([*cli, "data", "synth", "--datasets", "toy_synth", "--out", "data"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([*cli, "--quiet", "run", "--backbone", "toy_vit", "--card", str(CARD), "--card", str(card2),
                        "--tier", "smoke", "--root", "data", "--device", "cpu", "--jobs", "2", "--no-leaderboard"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 card(s) on 2 parallel runs of 1 thread(s) each" in r.stderr
    for name in ("toy_bright", "toy_bright2"):
        record = json.loads((tmp_path / "results" / "adhoc" / "toy_vit" / f"{name}.smoke.json").read_text())
        assert record["status"] == "ok" and record["card"]["family"] == "toy_bright"


@pytest.fixture
def slow_cards(tmp_path: Path) -> Path:
    """A tasks folder with three copies of the attributes smoke card that each train for minutes."""
    import shutil

    import yaml

    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "tasks", tasks)
    card = yaml.safe_load((REPO / "tasks" / "synth_attr.yaml").read_text())
    card["input"] = {"height": 64, "width": 32}
    card["schedule"].update(epochs=1000, max_iters=100_000)
    card["tiers"] = {}
    for name in ("long_a", "long_b", "long_c"):
        (tasks / f"{name}.yaml").write_text(yaml.safe_dump({**card, "name": name}, sort_keys=False))
    return tasks


def _default_sigint() -> None:
    # a shell starts background jobs (`cmd &`, as CI may run pytest) with SIGINT ignored, which
    # the child inherits and Python then keeps: restore it, as a terminal's Ctrl-C would find it
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("whom", ["group", "parent"])
def test_an_interrupted_pool_stops_every_run(tmp_path: Path, slow_cards: Path, synth_suite: Path, whom: str):
    """Ctrl-C in a terminal signals the whole process group; `kill -INT` only the parent. Either
    way the command ends promptly, no pool process outlives it and the queued run never starts."""
    import signal
    import time

    env = {**os.environ, "HCBENCH_TASKS": str(slow_cards), "HCBENCH_WORKERS": "0"}
    cmd = [sys.executable, "-m", "hcbench.cli", "run", "--backbone", "vit_tiny", "--card", "long_a", "--card", "long_b",
           "--card", "long_c", "--synth", str(synth_suite), "--device", "cpu", "--jobs", "2", "--no-leaderboard"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 300  # both runs have begun: each wrote its effective config
        while len(list((tmp_path / "results").rglob("*.config.json"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(2)
        if whom == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, out
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # nothing of the command's process group is left
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"processes of the interrupted command still run:\n{out}")
    # the two running runs had written their effective config; the queued one never started
    started = sorted(p.name for p in (tmp_path / "results").rglob("*.config.json"))
    assert started == ["long_a.config.json", "long_b.config.json"], out
    assert not iter_record_files(tmp_path / "results"), out  # no run finished, none was recorded as failed
