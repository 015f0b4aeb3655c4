"""What a new user meets on the command line: every default in ``--help``, a misspelt backbone
caught once before any card runs (with close names suggested), ``hcbench clean``."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from hcbench.cli import build_parser, main
from hcbench.cli.parser import _shown_default


def _parsers(p: argparse.ArgumentParser, path: str = "hcbench"):
    yield path, p
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_help_shows_every_default():
    missing = []
    for path, parser in _parsers(build_parser()):
        text = " ".join(parser.format_help().split())
        for a in parser._actions:
            shown = _shown_default(a)
            if shown is not None and "default" not in (a.help or "").lower():
                missing.append(f"{path} {a.option_strings or a.dest}")
        assert "%(" not in text, path
    assert missing == []
    run_help = " ".join(build_parser()._subparsers._group_actions[0].choices["run"].format_help().split())
    assert "(default: 0)" in run_help and "(default: runs)" in run_help and "(default: local)" in run_help
    # the tier a --card run gets is said in words (full: the published schedule), as is the suite's
    assert "full with --card" in run_help and "the suite's own tier" in run_help
    list_help = " ".join(build_parser()._subparsers._group_actions[0].choices["list"].format_help().split())
    assert "(default: 256x192)" in list_help


@pytest.mark.parametrize("spec,expect", [
    ("vit_tinyy", "did you mean vit_tiny"),
    ("timm:resnet_18", "did you mean timm:resnet18"),
    ("file:no/such/model.safetensors", "no such checkpoint file"),
    ("student:nobody", "student 'nobody' not found"),
])
def test_misspelt_backbone_fails_once_before_any_card_runs(tmp_path: Path, monkeypatch, capsys, spec, expect):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HCBENCH_STUDENTS", str(tmp_path / "students"))
    code = main(["--quiet", "run", "--backbone", spec, "--suite", "smoke", "--out", "res", "--work-dir", "w",
                 "--synth", "synth", "--device", "cpu", "--no-leaderboard"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("hcbench: error:") == 1 and expect in err and "Traceback" not in err
    assert not (tmp_path / "res").exists() and not (tmp_path / "w").exists() and not (tmp_path / "synth").exists()


@pytest.mark.parametrize("architecture,expect", [
    ("timm:vit_tiny_patch16_22", "timm has no model 'vit_tiny_patch16_22'; did you mean timm:vit_tiny_patch16_224"),
    ("vit_tinyy", "unknown backbone 'vit_tinyy'; did you mean vit_tiny"),
    ("file:other.pth", "a card names an alias, a release or timm:<name>"),
])
def test_a_checkpoint_whose_card_names_a_misspelt_architecture_fails_once(tmp_path: Path, monkeypatch, capsys,
                                                                          architecture, expect):
    """The architecture inside a ``file:`` checkpoint's card is checked like one given on the command
    line: one error before any card runs, and ``hcbench inspect`` still shows the layout and the card
    it suggests instead of a traceback."""
    from safetensors.torch import save_file

    from hcbench.backbones import build_backbone

    monkeypatch.chdir(tmp_path)
    save_file({k: v.contiguous() for k, v in build_backbone("vit_tiny", (64, 32)).state_dict().items()},
              tmp_path / "m.safetensors")
    (tmp_path / "m.safetensors.yaml").write_text(f"architecture: {architecture}\n")
    code = main(["--quiet", "run", "--backbone", "file:m.safetensors", "--suite", "smoke", "--out", "res",
                 "--work-dir", "w", "--synth", "synth", "--device", "cpu", "--no-leaderboard"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("hcbench: error:") == 1 and "Traceback" not in err
    assert f"backbone file:m.safetensors, card of m.safetensors: architecture {architecture!r}" in err
    assert expect in err
    assert not (tmp_path / "res").exists() and not (tmp_path / "synth").exists()

    assert main(["inspect", "m.safetensors"]) == 0
    out = capsys.readouterr().out
    assert "layout:     timm" in out and "suggested sidecar (m.safetensors.yaml):" in out
    assert "no load report: architecture" in out and expect in out


@pytest.mark.parametrize("typo,first", [("resnet_18", "resnet18"), ("ResNet-50", "resnet50"),
                                        ("convnext-tiny", "convnext_tiny"),
                                        ("vit_tiny_patch16_244", "vit_tiny_patch16_224")])
def test_timm_suggestions_rank_close_names_first(typo, first):
    from hcbench.backbones.validate import suggest_timm

    got = suggest_timm(typo)
    assert got[0] == first and len(got) == 3


def _tiny_attr_card(folder: Path, name: str) -> Path:
    import yaml

    from hcbench.cards import tasks_dir

    card = yaml.safe_load((tasks_dir() / "synth_attr.yaml").read_text())
    card["name"] = name
    card["input"] = {"height": 64, "width": 32}
    card["schedule"].update(epochs=1, batch_size=8, max_iters=3, warmup_iters=1, eval_limit=16, train_limit=32)
    card["tiers"] = {}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


@pytest.mark.slow  # two tiny fine-tunes: about a minute on a busy 2-core machine
def test_run_output_counts_cards_prints_each_result_and_where_records_went(tmp_path: Path, monkeypatch, capfd):
    from hcbench.results.store import read_record
    from hcbench.synth import write_suite

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HCBENCH_WORKERS", "0")
    write_suite(tmp_path / "synth", datasets=["synth_attr"], fraction=0.2)
    cards = [_tiny_attr_card(tmp_path, n) for n in ("tiny_a", "tiny_b")]
    code = main(["--quiet", "run", "--backbone", "vit_tiny", "--card", str(cards[0]), "--card", str(cards[1]),
                 "--synth", "synth", "--device", "cpu", "--out", "res", "--work-dir", "w", "--no-leaderboard"])
    err = capfd.readouterr().err
    assert code == 0, err[-800:]
    assert "card 1/2: tiny_a [full, seed 0] with vit_tiny" in err and "card 2/2: tiny_b" in err
    assert err.index("card 1/2") < err.index("done tiny_a") < err.index("card 2/2") < err.index("done tiny_b")
    for name in ("tiny_a", "tiny_b"):
        rec = read_record(tmp_path / "res" / "adhoc" / "vit_tiny" / f"{name}.json")
        shown = f"{100 * rec.metrics[rec.primary]:.3g}"
        assert f"done {name} [full]: {rec.primary} {shown}" in err
        assert str(Path("res") / "adhoc" / "vit_tiny" / f"{name}.json") in err
    assert "records in res/adhoc/, checkpoints in w/" in err


def test_progress_row_keeps_its_bar_when_the_loss_text_is_long():
    import io
    import re

    from hcbench.engine.progress import Progress

    buf = io.StringIO()
    p = Progress(plain=False, stream=buf)
    p._rich.console.width = 90
    t = p.task("train synth_pose", total=50)
    p.advance(t, 10, losses={f"loss_term_{i}": 0.123 * i for i in range(30)}, lr=1e-3)
    p.close()
    rows = [r for r in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", buf.getvalue()).replace("\r", "\n").splitlines()
            if "10/50" in r]
    assert rows, buf.getvalue()
    row = rows[-1]
    assert len(row) <= 90 and row.startswith("train synth_pose ") and "━" * 5 in row
    assert "lr=0.001" in row and row.rstrip().endswith("…")


def test_clean_lists_old_checkpoints_with_sizes_and_removes_them_only_with_yes(tmp_path: Path, monkeypatch, capsys):
    import os
    import time

    monkeypatch.chdir(tmp_path)
    old = tmp_path / "runs" / "adhoc" / "vit_tiny" / "synth_pose-full-s0-0123456789ab"
    new = tmp_path / "runs" / "pretrain" / "student_a"
    for folder, size in ((old, 3000), (new, 700)):
        folder.mkdir(parents=True)
        (folder / "last.pt").write_bytes(b"\0" * size)
    (old / "train.log").write_bytes(b"x" * 72)
    week_ago = time.time() - 8 * 86400
    for p in old.iterdir():
        os.utime(p, (week_ago, week_ago))
    record = tmp_path / "results" / "adhoc" / "vit_tiny" / "synth_pose.json"
    record.parent.mkdir(parents=True)
    record.write_text('{"schema": "hcbench.result/1"}')

    assert main(["clean"]) == 0  # lists, removes nothing
    out = capsys.readouterr().out
    assert f"3.0 KB    8.0 d  {Path('runs/adhoc/vit_tiny/synth_pose-full-s0-0123456789ab')}" in out
    assert "700 B" in out and "2 folder(s), 3.7 KB would be removed; pass --yes" in out
    assert old.exists() and new.exists()

    assert main(["clean", "--older-than", "7", "--yes"]) == 0
    assert "removed 1 folder(s), freed 3.0 KB" in capsys.readouterr().out
    assert not old.exists() and new.exists() and record.exists()

    assert main(["clean", "--work-dir", "results", "--yes"]) == 2  # never results
    assert "never results" in capsys.readouterr().err and record.exists()
    assert main(["clean", "--work-dir", "nowhere"]) == 2


@pytest.mark.parametrize("dataset,root,expect", [
    ("coco", "missing", "https://cocodataset.org/#download"),
    ("mpii", None, "mpii_human_pose_v1.tar.gz"),
    ("synth_pose", "missing", "hcbench data synth --out DIR"),
])
def test_data_check_on_a_missing_root_says_how_to_obtain_the_dataset(tmp_path: Path, monkeypatch, capsys,
                                                                      dataset, root, expect):
    monkeypatch.delenv("HCBENCH_DATA", raising=False)
    args = ["data", "check", dataset] + (["--root", str(tmp_path / root)] if root else [])
    assert main(args) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"how to obtain {dataset}:" in out and expect in out
    assert ("dataset root folder missing" if root else "no data root") in out
    assert "licence:" in out


@pytest.mark.slow  # one tiny fine-tune with a DataLoader worker process
def test_a_corrupt_training_image_fails_the_card_with_one_line_naming_the_file(tmp_path: Path, monkeypatch, capfd):
    from hcbench.results.store import read_record
    from hcbench.synth import write_suite

    monkeypatch.chdir(tmp_path)
    write_suite(tmp_path / "synth", datasets=["synth_attr"], fraction=0.2)
    images = sorted(p for p in (tmp_path / "synth" / "synth_attr").rglob("*.jpg"))
    bad = images[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: the decode fails inside a worker
    card = _tiny_attr_card(tmp_path, "tiny_bad")
    code = main(["--quiet", "run", "--backbone", "vit_tiny", "--card", str(card), "--synth", "synth",
                 "--device", "cpu", "--out", "res", "--work-dir", "w", "--no-leaderboard", "--workers", "1"])
    err = capfd.readouterr().err
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("FAILED tiny_bad")]
    rel = bad.relative_to(tmp_path)  # --synth synth: the data root is relative
    assert len(failed) == 1 and f"DataFormatError: {rel}: cannot decode image" in failed[0] and "Traceback" not in err
    rec = read_record(tmp_path / "res" / "adhoc" / "vit_tiny" / "tiny_bad.json")
    assert rec.status == "failed" and str(rel) in rec.error
