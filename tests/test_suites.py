"""The seeds' suites (dpal15, saip12) and incomplete suites: listed with their missing cards,
refused by `hcbench run` before any training, run in part with --allow-missing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hcbench.cards import IncompleteSuiteError, get_suite, suite_cards, tasks_dir
from hcbench.cli import main

DPAL15 = ["coco_pose", "crowdpose_pose", "humanart_pose", "coco_wholebody_pose", "ap10k_pose", "chimpact_pose",
          "crowdhuman_det", "lip_parsing", "fashionpedia_seg", "market_reid", "msmt_reid", "cuhkpedes_t2i",
          "icfgpedes_t2i", "pa100k_attr", "peta_zs_attr"]
SAIP12 = ["market_reid", "msmt_reid", "cuhkpedes_t2i", "icfgpedes_t2i", "pa100k_attr", "peta_zs_attr", "coco_pose",
          "coco_wholebody_pose", "lip_parsing", "crowdhuman_det", "cihp_parsing", "fashionpedia_seg"]
OTHER_ISSUES = {"fashionpedia_seg", "cuhkpedes_t2i", "icfgpedes_t2i"}  # cards that other work adds


def test_seed_suites_list_the_papers_benchmarks():
    assert get_suite("dpal15").cards == DPAL15 and len(DPAL15) == 15
    assert get_suite("saip12").cards == SAIP12 and len(SAIP12) == 12
    for name in ("dpal15", "saip12"):
        suite = get_suite(name)
        assert set(suite.missing) <= OTHER_ISSUES  # every card of this issue exists
        # the description names every card whose protocol differs from the seed's config
        for card in ("crowdhuman_det", "lip_parsing", "coco_wholebody_pose", "fashionpedia_seg"):
            assert card in suite.description


@pytest.fixture
def partial_tasks(tmp_path, monkeypatch) -> Path:
    """A copy of tasks/ without the cards other issues add (the state before they land)."""
    src = tasks_dir()
    dst = tmp_path / "tasks"
    shutil.copytree(src, dst)
    for name in OTHER_ISSUES:
        (dst / f"{name}.yaml").unlink(missing_ok=True)
    (dst / "suites" / "mini.yaml").write_text(
        "name: mini\ndescription: one existing card, one missing\ntier: smoke\ncards: [synth_attr_zs, no_such_card]\n")
    monkeypatch.setenv("HCBENCH_TASKS", str(dst))
    return dst


def test_incomplete_suites_are_listed_with_their_missing_cards(partial_tasks, capsys):
    suite = get_suite("dpal15")
    assert not suite.complete and sorted(suite.missing) == sorted(OTHER_ISSUES)
    assert suite.available == [c for c in DPAL15 if c not in OTHER_ISSUES]
    with pytest.raises(IncompleteSuiteError, match="fashionpedia_seg") as e:
        suite_cards(suite)
    for name in OTHER_ISSUES:
        assert name in str(e.value)
    assert suite_cards(suite, allow_missing=True) == suite.available
    assert main(["list", "suites", "--format", "json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["hcb15"]["status"] == "complete"
    for name in ("dpal15", "saip12"):
        assert rows[name]["status"].startswith("incomplete: missing ")
        assert set(rows[name]["status"].removeprefix("incomplete: missing ").split(", ")) == \
            OTHER_ISSUES & set(get_suite(name).cards)


def _run_args(tmp_path: Path) -> list[str]:
    return ["--quiet", "run", "--backbone", "vit_tiny", "--device", "cpu", "--out", str(tmp_path / "results"),
            "--work-dir", str(tmp_path / "runs"), "--synth", str(tmp_path / "synth"), "--no-leaderboard",
            "--workers", "0"]


def test_run_of_an_incomplete_suite_stops_before_anything_starts(partial_tasks, tmp_path, capsys):
    assert main([*_run_args(tmp_path), "--suite", "dpal15"]) == 2
    err = capsys.readouterr().err
    assert "suite 'dpal15' is incomplete" in err and "--allow-missing" in err
    assert all(name in err for name in OTHER_ISSUES)
    for folder in ("results", "runs", "synth"):  # no data generated, no run started, no record
        assert not (tmp_path / folder).exists()


@pytest.mark.slow  # a real (tiny) fine-tuning run through the command line
def test_allow_missing_runs_the_existing_cards(partial_tasks, tmp_path):
    from hcbench.synth import write_suite

    out, args = tmp_path / "results", _run_args(tmp_path)
    write_suite(tmp_path / "synth", "smoke", datasets=["synth_attr_zs"], fraction=0.5)
    assert main([*args, "--suite", "mini", "--allow-missing"]) == 0
    records = sorted(p.name for p in (out / "mini").rglob("*.json") if not p.name.endswith(
        (".config.json", ".predictions.json")))
    assert records == ["synth_attr_zs.smoke.json"]  # <card>.<tier>.json: the mini suite is smoke tier
