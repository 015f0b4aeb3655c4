"""The pretraining runner: every method end to end, checkpoints, refusals, kill + resume, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from hcbench.backbones import build_backbone
from hcbench.pretrain.runner import PretrainConfig, lr_factor, pretrain
from hcbench.registry import PRETRAINERS
from pretrain_helpers import VIEWS, write_images

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _cfg(tmp_path: Path, images: Path, method: str, name: str, **kw) -> PretrainConfig:
    base = dict(method=method, images=images, name=name, student="pt_vit2_tiny",
                teacher="pt_vit2_small" if method in ("dpal", "feature-kd") else None, epochs=1, batch_size=2,
                lr=1e-3, work_dir=tmp_path / "runs", students_root=tmp_path / "students", size="small",
                views=VIEWS, workers=0, method_options={"inter_dim": 32} if method == "dpal" else {})
    base.update(kw)
    return PretrainConfig(**base)


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_registry_lists_the_methods():
    assert PRETRAINERS.names() == ["dpal", "feature-kd", "random", "saip"]
    assert PRETRAINERS.entry("dpal").meta["teacher"] == "required"
    assert PRETRAINERS.entry("saip").meta["teacher"] == "none"


@pytest.mark.parametrize("method", ["dpal", "saip", "feature-kd"])
def test_each_method_trains_checkpoints_and_exports_the_bare_student(tmp_path, images, method, monkeypatch):
    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    cfg = _cfg(tmp_path, images, method, f"{method}_run", epochs=2, max_steps=4)
    folder = pretrain(cfg)
    assert folder == tmp_path / "students" / f"{method}_run"
    run = tmp_path / "runs" / f"{method}_run"
    log = _log(run)
    assert log[0]["event"] == "start" and [r["step"] for r in log[1:]] == [1, 2, 3, 4]
    assert [r["epoch"] for r in log[1:]] == [0, 0, 0, 1]  # 6 images / batch 2 = 3 steps per epoch
    assert all(r["loss"] > 0 for r in log[1:])
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1
    heads = {k.split(".")[0] for k in ckpt["method"]} - {"student"}
    assert heads == {"dpal": {"decoder"}, "saip": {"inter_norm", "csm_head", "csr_decoder", "css_decoder", "ema",
                                                    "center"}, "feature-kd": {"cls_proj", "patch_proj"}}[method]
    # the export is the student alone, equal to the checkpoint's student
    weights = load_file(folder / "backbone.safetensors")
    student_sd = {k[len("student.model."):]: v for k, v in ckpt["method"].items() if k.startswith("student.model.")}
    assert weights.keys() == student_sd.keys()
    assert all(torch.equal(weights[k], student_sd[k]) for k in weights)
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert card["architecture"] == "pt_vit2_tiny" and card["method"] == method and card["steps"] == 4
    assert card["teacher"] == cfg.teacher and card["images"] == str(images) and card["epochs"] == 2
    assert set(card["final_losses"]) == set(log[-1]) - {"step", "epoch", "lr"}
    loaded = build_backbone(f"student:{method}_run", VIEWS.global_size)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []


def test_random_baseline_exports_the_seeded_init(tmp_path, images):
    folder = pretrain(_cfg(tmp_path, images, "random", "rand0", seed=3))
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert card["method"] == "random" and card["steps"] == 0 and not (tmp_path / "runs" / "rand0").exists()
    torch.manual_seed(3)
    fresh = build_backbone("pt_vit2_tiny", VIEWS.global_size)
    weights = load_file(folder / "backbone.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())


def test_refusals_name_the_problem(tmp_path, images):
    with pytest.raises(ValueError, match="--teacher SPEC is required"):
        pretrain(_cfg(tmp_path, images, "dpal", "x", teacher=None))
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain(_cfg(tmp_path, images, "feature-kd", "x", batch_size=8))
    cfg = _cfg(tmp_path, images, "feature-kd", "kd", max_steps=1)
    pretrain(cfg)
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain(cfg)
    with pytest.raises(ValueError, match=r"cannot resume, the run differs \(seed"):
        pretrain(_cfg(tmp_path, images, "feature-kd", "kd", max_steps=2, seed=1, resume=True))


def test_lr_schedule_warms_up_then_follows_a_cosine():
    f = [lr_factor(s, 100, 0.1, 0.0) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.5, abs=0.02) and f[-1] < 0.01
    assert all(b <= a for a, b in zip(f[10:], f[11:]))


SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(1)
sys.path.insert(0, {here!r})
from pretrain_helpers import VIEWS  # registers the 2-block test ViTs
from hcbench.pretrain.dpal import DPAL
from hcbench.pretrain.runner import PretrainConfig, pretrain
from pathlib import Path
args = json.loads(sys.argv[1])
if args.pop("slow"):
    _orig = DPAL.after_step
    def _slow(self, progress):
        time.sleep(0.3)  # leave the parent time to kill us between checkpoints
        _orig(self, progress)
    DPAL.after_step = _slow
cfg = PretrainConfig(method="dpal", images=Path(args["images"]), name=args["name"], student="pt_vit2_tiny",
                     teacher="pt_vit2_small", epochs=2, batch_size=2, lr=1e-3, work_dir=Path(args["work"]),
                     students_root=Path(args["students"]), size="small", views=VIEWS, workers=0,
                     method_options={{"inter_dim": 32}}, checkpoint_every=1, resume=args["resume"])
pretrain(cfg)
"""


def _run_script(tmp_path: Path, **args) -> subprocess.Popen:
    script = tmp_path / "run_dpal.py"
    script.write_text(SCRIPT.format(here=str(HERE)))
    env = dict(os.environ, HCBENCH_QUIET="1")
    return subprocess.Popen([sys.executable, str(script), json.dumps(args)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_killed_run_resumes_from_its_last_checkpoint_and_matches_an_uninterrupted_run(tmp_path):
    images = write_images(tmp_path / "images", 6)
    common = dict(images=str(images), work=str(tmp_path / "runs"), students=str(tmp_path / "students"))
    ckpt = tmp_path / "runs" / "killed" / "last.pt"
    proc = _run_script(tmp_path, name="killed", resume=False, slow=True, **common)
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), proc.communicate()[0] if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(ckpt, weights_only=True)["step"]
    assert 1 <= killed_at < 6 and not (tmp_path / "students" / "killed").exists()

    proc = _run_script(tmp_path, name="killed", resume=True, slow=False, **common)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert f"resumed dpal killed from {ckpt} at step {killed_at}/6" in out
    log = _log(tmp_path / "runs" / "killed")
    resume_at = max(i for i, r in enumerate(log) if r.get("event") == "resume")
    assert log[resume_at]["step"] == killed_at
    assert [r["step"] for r in log[resume_at + 1:]] == list(range(killed_at + 1, 7))  # continued, not restarted
    assert torch.load(ckpt, weights_only=True)["step"] == 6

    # the same run without the kill, in this process (same seeds, one thread as in the script)
    straight = _cfg(tmp_path, images, "dpal", "straight", epochs=2, checkpoint_every=1)
    pretrain(straight)
    a = load_file(tmp_path / "students" / "killed" / "backbone.safetensors")
    b = load_file(tmp_path / "students" / "straight" / "backbone.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # same batches, same updates


def test_cli_pretrain_runs_and_prints_plain_progress(tmp_path, images, monkeypatch, capfd):
    from hcbench.cli import main

    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    monkeypatch.setenv("HCBENCH_PRETRAIN_SIZE", "small")
    monkeypatch.setenv("HCBENCH_PRETRAIN_MAX_STEPS", "1")
    monkeypatch.setenv("HCBENCH_WORKERS", "0")
    rc = main(["--quiet", "pretrain", "feature-kd", "--student", "pt_vit2_tiny", "--teacher", "pt_vit2_small",
               "--images", str(images), "--name", "cli_kd", "--epochs", "1", "--batch-size", "2",
               "--work-dir", str(tmp_path / "runs")])
    assert rc == 0
    out, err = capfd.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["student"] == "student:cli_kd"
    assert "pretrain feature-kd cli_kd: 1/1" in err and "loss=" in err and "patch=" in err
    card = yaml.safe_load((tmp_path / "students" / "cli_kd" / "card.yaml").read_text())
    assert card["size"] == "small" and card["views"]["global_size"] == [128, 64] and card["steps"] == 1
    assert build_backbone("student:cli_kd", (128, 64)).load_report.missing == []
