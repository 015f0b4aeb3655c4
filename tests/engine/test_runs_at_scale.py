"""Runs at scale: skip-completed, --force, stale cards, kill + resume, torchrun DDP, Slurm via submitit.

All runs use a tiny attributes card on the synthetic suite so each takes seconds.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hcbench.cli import main
from hcbench.results.store import load_records, read_record

REPO = Path(__file__).resolve().parents[2]
TINY = "tiny_attr"


@pytest.fixture
def env(tmp_path: Path, monkeypatch, synth_suite: Path):
    """A tasks folder holding the real cards plus a tiny attributes card, and a clean run folder."""
    tasks = tmp_path / "tasks"
    shutil.copytree(REPO / "tasks", tasks)
    card = yaml.safe_load((REPO / "tasks" / "synth_attr.yaml").read_text())
    card["name"] = TINY
    card["input"] = {"height": 64, "width": 32}
    card["schedule"].update(epochs=1, batch_size=8, max_iters=12, warmup_iters=2, eval_limit=48, train_limit=160)
    card["tiers"] = {}
    # no BatchNorm on the logits: with it, each torchrun rank would normalise with its half-batch
    # statistics (SyncBatchNorm needs CUDA) and two processes could not match one closely
    card["adapter"]["logit_bn"] = False
    (tasks / f"{TINY}.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    monkeypatch.setenv("HCBENCH_TASKS", str(tasks))
    monkeypatch.setenv("HCBENCH_WORKERS", "0")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _args(out: str, work: str, synth: Path, *extra: str) -> list[str]:
    return ["--quiet", "run", "--backbone", "vit_tiny", "--card", TINY, "--out", out, "--work-dir", work,
            "--synth", str(synth), "--device", "cpu", "--no-leaderboard", *extra]


def _cli(args: list[str], extra_env: dict | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(extra_env or {})}
    cmd = (launcher or [sys.executable, "-m", "hcbench.cli"]) + args
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def _metrics(out: Path) -> dict:
    [(path, rec)] = load_records(out)
    return rec.metrics


def test_skip_completed_force_and_stale_card(env: Path, synth_suite: Path, monkeypatch):
    import hcbench.engine.runner as runner

    calls = []
    real_fit = runner.fit
    monkeypatch.setattr(runner, "fit", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    assert main(_args("res", "work", synth_suite)) == 0
    assert len(calls) == 1
    first = read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json")

    assert main(_args("res", "work", synth_suite)) == 0  # finished: no training at all
    assert len(calls) == 1
    assert main(_args("res", "work2", synth_suite, "--force")) == 0
    assert len(calls) == 2
    # same seed, device type and world size: identical metrics
    assert read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json").metrics == first.metrics

    card_path = Path(os.environ["HCBENCH_TASKS"]) / f"{TINY}.yaml"
    card = yaml.safe_load(card_path.read_text())
    card["optim"]["lr"] *= 2  # a new protocol version: the old record is stale
    card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    from hcbench.cards import _all_cards

    _all_cards.cache_clear()
    assert main(_args("res", "work3", synth_suite)) == 0
    assert len(calls) == 3
    new = read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json")
    assert new.card.sha256 != first.card.sha256


def test_sigkill_mid_training_then_resume_matches_uninterrupted(env: Path, synth_suite: Path):
    ref = _cli(_args("ref", "ref_work", synth_suite))
    assert ref.returncode == 0, ref.stderr[-3000:]

    args = _args("res", "work", synth_suite, "--checkpoint-every", "5")
    killed = _cli(args, {"HCBENCH_FAULT_KILL_AT_STEP": "7"})
    assert killed.returncode == -9, killed.stderr[-3000:]  # died by SIGKILL
    assert not (env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json").exists()
    [ckpt] = list((env / "work").rglob("last.pt"))
    import torch

    assert torch.load(ckpt, weights_only=True)["step"] == 5

    resumed = _cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 5/12" in resumed.stderr
    assert _metrics(env / "res") == _metrics(env / "ref")


def test_torchrun_two_processes_match_one(env: Path, synth_suite: Path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed next to this Python")
    one = _cli(_args("one", "w1", synth_suite))
    assert one.returncode == 0, one.stderr[-3000:]
    two = _cli(_args("two", "w2", synth_suite),
               launcher=[torchrun, "--standalone", "--nproc-per-node", "2", "-m", "hcbench.cli"])
    assert two.returncode == 0, two.stderr[-3000:]
    records = list((env / "two").rglob(f"{TINY}.json"))
    assert len(records) == 1 and len(list((env / "two").rglob(f"{TINY}.predictions.*"))) == 1
    rec = read_record(records[0])
    assert rec.run.world_size == 2
    m1, m2 = _metrics(env / "one"), rec.metrics
    # Same global batch, data order and augmentations, and no BatchNorm in the head: the gradient
    # all-reduce makes each update the global-batch mean, so the two runs differ only by float
    # summation order. Thresholded metrics can flip a borderline prediction, hence 0.02, not 1e-6.
    for k in m1:
        assert abs(m1[k] - m2[k]) <= 0.02, (k, m1[k], m2[k])


def test_slurm_executor_through_submitit_local(env: Path, synth_suite: Path):
    pytest.importorskip("submitit")
    r = _cli(_args("res", "work", synth_suite, "--executor", "slurm", "--slurm-gpus", "0"),
             {"HCBENCH_SUBMITIT_CLUSTER": "local"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "submitted 1 job(s)" in r.stdout
    rec = read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json")
    assert rec.status == "ok" and 0 <= rec.metrics["mA"] <= 1


def test_failed_run_is_recorded_and_suite_continues(env: Path, synth_suite: Path):
    tasks = Path(os.environ["HCBENCH_TASKS"])
    bad = yaml.safe_load((tasks / f"{TINY}.yaml").read_text())
    bad["name"] = "broken_attr"
    bad["dataset"]["split"] = "no_such_split"
    (tasks / "broken_attr.yaml").write_text(yaml.safe_dump(bad, sort_keys=False))
    (tasks / "suites" / "mini.yaml").write_text(yaml.safe_dump({"name": "mini", "cards": ["broken_attr", TINY],
                                                                 "tier": "full"}))
    code = main(["--quiet", "run", "--backbone", "vit_tiny", "--suite", "mini", "--out", "res", "--work-dir", "w",
                 "--synth", str(synth_suite), "--device", "cpu"])
    assert code == 1
    failed = read_record(env / "res" / "mini" / "vit_tiny" / "broken_attr.json")
    assert failed.status == "failed" and "no_such_split" in failed.error
    assert read_record(env / "res" / "mini" / "vit_tiny" / f"{TINY}.json").status == "ok"
    json.dumps(failed.to_json_dict())


def test_finished_run_exports_its_backbone_as_a_student(env: Path, synth_suite: Path, monkeypatch, capsys):
    import torch

    from hcbench.backbones import build_backbone

    monkeypatch.setenv("HCBENCH_STUDENTS", str(env / "students"))
    assert main(_args("res", "work", synth_suite)) == 0
    record = env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json"
    assert main(["export", str(record), "--name", "teacher"]) == 0
    assert "student:teacher" in capsys.readouterr().out
    [ckpt] = list((env / "work").rglob("last.pt"))
    trained = {k[len("backbone."):]: v for k, v in torch.load(ckpt, weights_only=True)["model"].items()
               if k.startswith("backbone.")}
    student = build_backbone("student:teacher", (64, 32))  # strict: no missing or unexpected keys
    got = student.state_dict()
    assert got.keys() == trained.keys() and all(torch.equal(got[k], trained[k]) for k in got)
    card = yaml.safe_load((env / "students" / "teacher" / "card.yaml").read_text())
    assert card["method"] == "finetune" and card["source"]["card"] == TINY

    assert main(["--quiet", "run", "--backbone", "vit_tiny", "--card", TINY, "--out", "res", "--work-dir", "work2",
                 "--synth", str(synth_suite), "--device", "cpu", "--no-leaderboard", "--force"]) == 0
    shutil.rmtree(env / "work2")  # the run's checkpoint is gone: a clear error, nothing exported
    assert main(["export", str(record), "--name", "other"]) != 0
    assert "last.pt: the run's final checkpoint is missing" in capsys.readouterr().err
    assert not (env / "students" / "other").exists()
