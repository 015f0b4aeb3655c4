"""Runs at scale: skip-completed, --force, stale cards, kill + resume, torchrun DDP, Slurm via submitit.

All runs use a tiny attributes card on the synthetic suite so each takes seconds.
"""

import json
import os
import re
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
    path = env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json"
    new = read_record(path)
    assert new.card.sha256 != first.card.sha256

    # the code that made a record is part of what it claims: a record (and a checkpoint) made by
    # other code is stale and re-made, never skipped or resumed
    from hcbench.codeprint import card_code

    assert new.run.code == card_code(TINY)
    config = json.loads(path.with_name(f"{TINY}.config.json").read_text())
    assert config["code"]["fingerprint"] == new.run.code and "hcbench.adapters.attributes" in config["code"]["modules"]
    raw = json.loads(path.read_text())
    raw["run"]["code"] = "sha256:" + "0" * 64
    path.write_text(json.dumps(raw))
    assert main(_args("res", "work3", synth_suite)) == 0
    assert len(calls) == 4
    assert read_record(path).run.code == card_code(TINY)


def test_force_retrains_from_scratch_over_a_complete_checkpoint(env: Path, synth_suite: Path, capfd):
    """--force with the same work dir: the finished checkpoint is dropped and all 12 steps run
    again (it used to "resume at step 12/12"); a temp file left by a killed checkpoint write is
    removed when the run starts."""
    assert main(_args("res", "work", synth_suite)) == 0
    first = read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json")
    [ckpt] = list((env / "work").rglob("last.pt"))
    stale = ckpt.with_name(".last.pt.x7k2q9.tmp")
    stale.write_bytes(ckpt.read_bytes()[:1000])
    capfd.readouterr()
    assert main(_args("res", "work", synth_suite, "--force")) == 0
    err = capfd.readouterr().err
    rel_ckpt, rel_stale = ckpt.relative_to(env), stale.relative_to(env)  # --work-dir work, relative
    assert f"starting {TINY} from scratch: removed {rel_ckpt}" in err and "resumed" not in err
    assert f"removed {rel_stale}: the temp file of an interrupted checkpoint write" in err and not stale.exists()
    assert f"train {TINY}: 12/12" in err
    assert re.search(r"^1 run\(s\), 0 failed: wall \d+\.\d s, CPU \d+\.\d s$", err, re.M), err[-500:]
    import torch

    assert torch.load(ckpt, weights_only=True)["step"] == 12
    again = read_record(env / "res" / "adhoc" / "vit_tiny" / f"{TINY}.json")
    assert again.metrics == first.metrics and again.run.cpu_s is not None and again.run.cpu_s > 0


def test_sigkill_at_random_points_then_resume_matches_uninterrupted(env: Path, synth_suite: Path):
    """One run SIGKILLed five times, at steps drawn at random (seeded), each time resumed from its
    last checkpoint (every 2 steps): the finished record's metrics and predictions are
    byte-identical to an uninterrupted run's."""
    import random

    import torch

    ref = _cli(_args("ref", "ref_work", synth_suite))
    assert ref.returncode == 0, ref.stderr[-3000:]

    kills = sorted(random.Random(12).sample(range(1, 12), 5))  # 5 distinct steps of 12
    args = _args("res", "work", synth_suite, "--checkpoint-every", "2")
    resumed_from = 0
    for at in kills:
        killed = _cli(args, {"HCBENCH_FAULT_KILL_AT_STEP": str(at)})
        assert killed.returncode == -9, killed.stderr[-3000:]  # died by SIGKILL
        if resumed_from:
            assert f"at step {resumed_from}/12" in killed.stderr
        assert not list((env / "res").rglob(f"{TINY}.json"))
        # killed right after step `at`, before that step's checkpoint: the last one is below it
        resumed_from = 2 * ((at - 1) // 2)
        ckpts = list((env / "work").rglob("last.pt"))
        assert [torch.load(c, weights_only=True)["step"] for c in ckpts] == ([resumed_from] if resumed_from else [])

    resumed = _cli(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not resumed_from or f"at step {resumed_from}/12" in resumed.stderr
    [(_, got)], [(_, want)] = load_records(env / "res"), load_records(env / "ref")
    assert json.dumps(got.metrics) == json.dumps(want.metrics)
    assert got.predictions.sha256 == want.predictions.sha256


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
    assert "submitted 1 job(s)" in r.stderr
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


# --------------------------------------------------------------------------- run identity (issue 12)
def _tiny_card_file(env: Path) -> Path:
    """The tiny card with a smoke tier and an even smaller budget, as a card file (``--card PATH``)."""
    card = yaml.safe_load((Path(os.environ["HCBENCH_TASKS"]) / f"{TINY}.yaml").read_text())
    card["name"] = "tiny_ident"
    card["schedule"].update(max_iters=4, warmup_iters=1, eval_limit=24, train_limit=32)
    card["tiers"] = {"smoke": {"max_iters": 2}}
    path = env / "tiny_ident.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


def _checkpoint(path: Path, seed: int, drop_block: int | None = None, strict: bool = True) -> str:
    """A random-init vit_tiny written as ``path`` (safetensors) with its sidecar card; returns its sha256."""
    import torch
    from safetensors.torch import save_file

    from hcbench.backbones import build_backbone
    from hcbench.io import sha256_file

    torch.manual_seed(seed)
    sd = {k: v.contiguous() for k, v in build_backbone("vit_tiny", (256, 192)).model.state_dict().items()
          if drop_block is None or not k.startswith(f"blocks.{drop_block}.")}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    path.with_name(path.name + ".yaml").write_text("architecture: vit_tiny\n" + ("" if strict else "strict: false\n"))
    return sha256_file(path)


def _run_card(card: Path, backbone: str, out: str, work: str, synth: Path, *extra: str) -> int:
    return main(["--quiet", "run", "--backbone", backbone, "--card", str(card), "--out", out, "--work-dir", work,
                 "--synth", str(synth), "--device", "cpu", "--no-leaderboard", *extra])


def test_one_out_holds_every_identity_apart(env: Path, synth_suite: Path, monkeypatch):
    """Two checkpoints with one file name, two seeds and two tiers into one --out and one
    --work-dir: five records, each of its own run (checkpoint sha, seed, tier, predictions), B's
    equal to B run alone; a checkpoint replaced in place gets a record and a work folder of its own."""
    import hcbench.engine.runner as runner

    card = _tiny_card_file(env)
    sha_a = _checkpoint(env / "a" / "model.safetensors", seed=1)
    sha_b = _checkpoint(env / "b" / "model.safetensors", seed=2)
    calls = []
    real_fit = runner.fit
    monkeypatch.setattr(runner, "fit", lambda *a, **k: calls.append(k["work_dir"]) or real_fit(*a, **k))
    runs = [("file:a/model.safetensors", ()), ("file:b/model.safetensors", ()),
            ("file:a/model.safetensors", ("--seed", "1")), ("file:a/model.safetensors", ("--tier", "smoke"))]
    for backbone, extra in runs:
        assert _run_card(card, backbone, "res", "work", synth_suite, *extra) == 0
    assert len(calls) == 4 and len(set(calls)) == 4  # four work folders, no resume of another run
    got = {(r.backbone.spec, r.backbone.checkpoint_sha256, r.run.seed, r.card.tier): p.relative_to(env / "res")
           for p, r in load_records(env / "res")}
    assert got == {
        ("file:a/model.safetensors", sha_a, 0, "full"): Path(f"adhoc/file-model-{sha_a[:8]}/tiny_ident.json"),
        ("file:b/model.safetensors", sha_b, 0, "full"): Path(f"adhoc/file-model-{sha_b[:8]}/tiny_ident.json"),
        ("file:a/model.safetensors", sha_a, 1, "full"): Path(f"adhoc/file-model-{sha_a[:8]}/tiny_ident.s1.json"),
        ("file:a/model.safetensors", sha_a, 0, "smoke"): Path(f"adhoc/file-model-{sha_a[:8]}/tiny_ident.smoke.json"),
    }
    from hcbench.io import sha256_file

    for path, rec in load_records(env / "res"):  # each record names its own predictions and config
        assert sha256_file(path.with_name(rec.predictions.file)) == rec.predictions.sha256
        config = json.loads(path.with_name(f"{path.stem}.config.json").read_text())
        assert (config["seed"], config["card"]["tier"], config["backbone"]) == (rec.run.seed, rec.card.tier,
                                                                                 rec.backbone.spec)
    # B run alone in a clean folder: exactly B's record (before the fix it was A's metrics)
    assert _run_card(card, "file:b/model.safetensors", "ref", "refwork", synth_suite) == 0
    [(_, alone)] = load_records(env / "ref")
    rec_b = read_record(env / "res" / "adhoc" / f"file-model-{sha_b[:8]}" / "tiny_ident.json")
    assert alone.metrics == rec_b.metrics and alone.predictions.sha256 == rec_b.predictions.sha256

    for backbone, extra in runs:  # all four finished: nothing trains again
        assert _run_card(card, backbone, "res", "work", synth_suite, *extra) == 0
    assert len(calls) == 5

    old_a = (env / "res" / "adhoc" / f"file-model-{sha_a[:8]}" / "tiny_ident.json").read_bytes()
    sha_c = _checkpoint(env / "a" / "model.safetensors", seed=3)  # replaced in place
    assert _run_card(card, "file:a/model.safetensors", "res", "work", synth_suite) == 0
    assert len(calls) == 6 and calls[-1] not in calls[:-1]
    rec_c = read_record(env / "res" / "adhoc" / f"file-model-{sha_c[:8]}" / "tiny_ident.json")
    assert rec_c.backbone.checkpoint_sha256 == sha_c
    assert (env / "res" / "adhoc" / f"file-model-{sha_a[:8]}" / "tiny_ident.json").read_bytes() == old_a
    assert len(load_records(env / "res")) == 5


def test_partial_backbone_load_is_printed_stored_and_refused_by_strict_leaderboard(env: Path, synth_suite: Path,
                                                                                   capfd):
    card = _tiny_card_file(env)
    _checkpoint(env / "half" / "model.safetensors", seed=1, drop_block=11, strict=False)
    capfd.readouterr()
    assert _run_card(card, "file:half/model.safetensors", "res", "work", synth_suite, "--tier", "smoke") == 0
    err = capfd.readouterr().err
    assert "PARTIAL backbone load:" in err and "12 missing: blocks.11." in err
    [(path, rec)] = load_records(env / "res")
    load = rec.backbone.load
    assert load["counts"]["missing"] == 12 and all(k.startswith("blocks.11.") for k in load["missing"])
    assert load["strict"] is False and load["counts"]["loaded"] > 100

    assert main(["leaderboard", "--results", "res"]) == 0
    capfd.readouterr()
    assert main(["leaderboard", "--results", "res", "--strict"]) == 2
    err = capfd.readouterr().err
    assert f"{path.relative_to(env)}: file:half/model.safetensors loaded with 12 backbone tensor(s) missing (blocks.11." in err
    assert "Traceback" not in err

    # a complete checkpoint: the load is stored too, and --strict accepts it
    _checkpoint(env / "full" / "model.safetensors", seed=1)
    assert _run_card(card, "file:full/model.safetensors", "res2", "work", synth_suite, "--tier", "smoke") == 0
    assert "PARTIAL" not in capfd.readouterr().err
    [(_, rec)] = load_records(env / "res2")
    assert rec.backbone.load["counts"]["missing"] == 0 and rec.backbone.load["counts"]["loaded"] > 100
    assert main(["leaderboard", "--results", "res2", "--strict"]) == 0


_GENERATE = """
import sys
from pathlib import Path
from hcbench.engine.runner import data_root
print(data_root("synth_attr", None, Path(sys.argv[1])))
"""


def test_two_processes_generate_a_missing_synthetic_dataset_once(tmp_path: Path):
    """Two runs sharing a new --synth folder: one writes synth_attr under the lock, the other
    waits and uses it; only the needed dataset is written."""
    synth = tmp_path / "synth"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", _GENERATE, str(synth)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.strip() == str(synth / "synth_attr")
    assert sorted(p.name for p in synth.iterdir()) == [".generate.lock", "synth_attr"]
    manifest = json.loads((synth / "synth_attr" / "synth.json").read_text())
    assert manifest["dataset"] == "synth_attr" and manifest["size"] == "smoke"
