"""The t2i family through every command: ``run`` (tiny card on tiny synthetic data), the
leaderboard, the paper table, the report, ``score t2i --card`` from the run's own files, and a
submission bundle re-scored by ``submit validate --rescore`` -- one code path for all of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hcbench.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_env(tmp_path: Path, monkeypatch):
    from hcbench.synth.t2i import write_t2i_synth

    tasks = tmp_path / "tasks"
    (tasks / "suites").mkdir(parents=True)
    card = yaml.safe_load((REPO / "tasks" / "synth_t2i.yaml").read_text())
    card["name"] = "tiny_t2i"
    card["adapter"] |= {"num_ids": 4, "embed_dim": 16,
                        "text": {"layers": 1, "width": 16, "heads": 2, "context_length": 64}}
    card["input"] = {"height": 32, "width": 16}
    card["tiers"] = {"smoke": {"max_iters": 2, "batch_size": 8, "warmup_iters": 1}}
    (tasks / "tiny_t2i.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    (tasks / "suites" / "mini.yaml").write_text(yaml.safe_dump({"name": "mini", "cards": ["tiny_t2i"],
                                                                "tier": "smoke"}))
    monkeypatch.setenv("HCBENCH_TASKS", str(tasks))
    data = tmp_path / "data"
    write_t2i_synth(data / "synth_t2i", 4, 2, 3, 2, seed=0)
    monkeypatch.chdir(tmp_path)
    return tmp_path, data


def test_run_leaderboard_table_report_score_and_rescore(tiny_env, capsys):
    tmp, data = tiny_env
    assert main(["--quiet", "run", "--backbone", "vit_tiny", "--suite", "mini", "--root", str(data), "--out", "res",
                 "--work-dir", "work", "--device", "cpu", "--no-leaderboard"]) == 0
    from hcbench.results.store import load_records

    [(rec_path, _)] = list(load_records(tmp / "res", "mini"))
    rec = json.loads(rec_path.read_text())
    assert rec["status"] == "ok" and rec["card"]["family"] == "t2i" and rec["primary"] == "rank1"
    assert set(rec["metrics"]) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    pred = rec_path.with_name(rec["predictions"]["file"])
    assert pred.suffix == ".npz"
    capsys.readouterr()

    assert main(["leaderboard", "--results", "res", "--suite", "mini", "--format", "markdown"]) == 0
    board = capsys.readouterr().out
    assert "tiny_t2i" in board and "vit_tiny" in board
    assert main(["table", "--results", "res", "--suite", "mini", "--format", "markdown"]) == 0
    assert "Text-to-image" in capsys.readouterr().out
    assert main(["report", "--results", "res", "--suite", "mini", "--out", "report"]) == 0
    capsys.readouterr()

    assert main(["score", "t2i", "--card", "tiny_t2i", "--gt", str(data / "synth_t2i"), "--pred", str(pred)]) == 0
    scored = json.loads(capsys.readouterr().out)
    for k, v in rec["metrics"].items():
        assert scored[k] == pytest.approx(v, abs=1e-12), k

    assert main(["submit", "pack", "--results", "res", "--out", "bundle.zip", "--suite", "mini"]) == 0
    assert main(["submit", "validate", "bundle.zip", "--rescore", "--root", str(data)]) == 0
