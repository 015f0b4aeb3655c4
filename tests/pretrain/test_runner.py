"""The pretraining runner: every method end to end, checkpoints, refusals, the CLI.
(Kill + resume: test_resume_after_kill.py.)"""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from pretrain_helpers import VIEWS, read_log, run_config
from safetensors.torch import load_file

from hcbench.backbones import build_backbone
from hcbench.pretrain.runner import lr_factor, pretrain
from hcbench.registry import PRETRAINERS


def test_registry_lists_the_methods():
    assert PRETRAINERS.names() == ["dpal", "feature-kd", "random", "saip"]
    assert PRETRAINERS.entry("dpal").meta["teacher"] == "required"
    assert PRETRAINERS.entry("saip").meta["teacher"] == "none"


@pytest.mark.parametrize("method", ["dpal", "saip", "feature-kd"])
def test_each_method_trains_checkpoints_and_exports_the_bare_student(tmp_path, images, method, monkeypatch):
    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    cfg = run_config(tmp_path, images, method, f"{method}_run", epochs=2, max_steps=4)
    folder = pretrain(cfg)
    assert folder == tmp_path / "students" / f"{method}_run"
    run = tmp_path / "runs" / f"{method}_run"
    log = read_log(run)
    assert log[0]["event"] == "start" and [r["step"] for r in log[1:]] == [1, 2, 3, 4]
    assert [r["epoch"] for r in log[1:]] == [0, 0, 0, 1]  # 6 images / batch 2 = 3 steps per epoch
    assert all(r["loss"] > 0 for r in log[1:])
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["epoch"] == 1
    heads = {k.split(".")[0] for k in ckpt["model"]} - {"student"}
    assert heads == {"dpal": {"decoder"}, "saip": {"inter_norm", "csm_head", "csr_decoder", "css_decoder", "ema",
                                                    "center"}, "feature-kd": {"cls_proj", "patch_proj"}}[method]
    # the export is the student alone, equal to the checkpoint's student
    weights = load_file(folder / "backbone.safetensors")
    student_sd = {k[len("student.model."):]: v for k, v in ckpt["model"].items() if k.startswith("student.model.")}
    assert weights.keys() == student_sd.keys()
    assert all(torch.equal(weights[k], student_sd[k]) for k in weights)
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert card["architecture"] == "pt_vit2_tiny" and card["method"] == method and card["steps"] == 4
    assert card["teacher"] == cfg.teacher and card["images"] == str(images) and card["epochs"] == 2
    assert set(card["final_losses"]) == set(log[-1]) - {"step", "epoch", "lr"}
    loaded = build_backbone(f"student:{method}_run", VIEWS.global_size)
    assert loaded.load_report.missing == [] and loaded.load_report.unexpected == []


def test_random_baseline_exports_the_seeded_init(tmp_path, images):
    folder = pretrain(run_config(tmp_path, images, "random", "rand0", seed=3))
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert card["method"] == "random" and card["steps"] == 0 and not (tmp_path / "runs" / "rand0").exists()
    torch.manual_seed(3)
    fresh = build_backbone("pt_vit2_tiny", VIEWS.global_size)
    weights = load_file(folder / "backbone.safetensors")
    assert all(torch.equal(weights[k], v) for k, v in fresh.model.state_dict().items())


def test_refusals_name_the_problem(tmp_path, images):
    with pytest.raises(ValueError, match="--teacher SPEC is required"):
        pretrain(run_config(tmp_path, images, "dpal", "x", teacher=None))
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain(run_config(tmp_path, images, "feature-kd", "x", batch_size=8))
    cfg = run_config(tmp_path, images, "feature-kd", "kd", max_steps=1)
    pretrain(cfg)
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain(cfg)
    with pytest.raises(ValueError, match=r"cannot resume, the run differs \(seed"):
        pretrain(run_config(tmp_path, images, "feature-kd", "kd", max_steps=2, seed=1, resume=True))


def test_lr_schedule_warms_up_then_follows_a_cosine():
    f = [lr_factor(s, 100, 0.1, 0.0) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0) and f[10] == pytest.approx(1.0)
    assert f[55] == pytest.approx(0.5, abs=0.02) and f[-1] < 0.01
    assert all(b <= a for a, b in zip(f[10:], f[11:], strict=False))


def test_cli_pretrain_runs_and_prints_plain_progress(tmp_path, images, monkeypatch, capfd):
    from hcbench.cli import main

    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    rc = main(["--quiet", "pretrain", "feature-kd", "--student", "pt_vit2_tiny", "--teacher", "pt_vit2_small",
               "--images", str(images), "--name", "cli_kd", "--epochs", "1", "--batch-size", "2",
               "--work-dir", str(tmp_path / "runs"), "--size", "small", "--max-steps", "1", "--workers", "0"])
    assert rc == 0
    out, err = capfd.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["student"] == "student:cli_kd"
    assert "pretrain feature-kd cli_kd: 1/1" in err and "loss=" in err and "patch=" in err
    card = yaml.safe_load((tmp_path / "students" / "cli_kd" / "card.yaml").read_text())
    assert card["size"] == "small" and card["views"]["global_size"] == [128, 64] and card["steps"] == 1
    assert build_backbone("student:cli_kd", (128, 64)).load_report.missing == []


def test_cli_pretrain_passes_optimizer_settings_and_method_options(tmp_path, images, monkeypatch, capfd):
    from hcbench.cli import main

    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    rc = main(["--quiet", "pretrain", "dpal", "--student", "pt_vit2_tiny", "--teacher", "pt_vit2_small",
               "--images", str(images), "--name", "cli_dpal", "--epochs", "1", "--batch-size", "2",
               "--work-dir", str(tmp_path / "runs"), "--size", "small", "--max-steps", "1", "--workers", "0",
               "--weight-decay", "0.1", "--betas", "0.9", "0.999", "--warmup", "0.2", "--clip-grad", "3",
               "--option", "route_weight=[0.2, 0.02]", "--option", "relation-tau=1e-1", "--option", "decoder_heads=2"])
    assert rc == 0, capfd.readouterr().err
    config = json.loads((tmp_path / "runs" / "cli_dpal" / "config.json").read_text())
    assert config["options"]["route_weight"] == [0.2, 0.02] and config["options"]["relation_tau"] == 0.1
    assert config["options"]["decoder_heads"] == 2 and config["options"]["route_switch"] == 0.1  # untouched
    assert config["weight_decay"] == 0.1 and config["betas"] == [0.9, 0.999] and config["warmup"] == 0.2
    # the options are part of the run's identity: resuming with other ones is refused
    assert config["identity"]["method_options"] == {"route_weight": [0.2, 0.02], "relation_tau": 0.1,
                                                    "decoder_heads": 2}


@pytest.mark.parametrize("option,message", [
    ("route_wieght=[0.2,0.02]", "unknown --option 'route_wieght'; the small preset's options: decoder_heads=4"),
    ("route_weight=0.2", "expected 2 values such as [0.1, 0.01]"),
    ("decoder_heads=2.5", "expected an integer"),
    ("relation_tau=[", "--option relation_tau=["),
])
def test_cli_pretrain_rejects_bad_options_before_reading_images(tmp_path, capfd, option, message):
    from hcbench.cli import main

    rc = main(["pretrain", "dpal", "--teacher", "pt_vit2_small", "--images", str(tmp_path / "none"),
               "--name", "x", "--size", "small", "--option", option])
    assert rc == 2
    err = capfd.readouterr().err
    assert message in err and err.startswith("hcbench: error: pretrain dpal:") and "Traceback" not in err


def test_cli_pretrain_defaults_are_the_configs():
    import dataclasses

    from hcbench.cli import build_parser
    from hcbench.pretrain.runner import PretrainConfig

    args = build_parser().parse_args(["pretrain", "dpal", "--images", "x", "--name", "y"])
    for f in dataclasses.fields(PretrainConfig):
        if hasattr(args, f.name) and f.default is not dataclasses.MISSING and f.name not in ("images", "name"):
            given = getattr(args, f.name)
            assert (tuple(given) if isinstance(given, list) else given) == f.default, f.name
