"""A sixth task family from outside ``hcbench/``: the example plugin of ``docs/extending.md``
(``docs/examples/toy_family.py``: a backbone, a dataset reader and card, a synthetic writer, an
adapter, an evaluator with its metric, and a protocol card) goes through ``data synth``, ``run``,
``score`` and ``leaderboard`` on the command line, with ``--include`` and no edit under hcbench/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "docs" / "examples"
PLUGIN = EXAMPLES / "toy_family.py"
CARD = EXAMPLES / "toy_bright.yaml"


def hcbench(*args, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "hcbench.cli", "--include", str(PLUGIN), *map(str, args)],
                       capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    return r


def test_toy_family_runs_scores_and_ranks_end_to_end(tmp_path: Path):
    data, results = tmp_path / "data", tmp_path / "results"
    r = hcbench("data", "synth", "--datasets", "toy_synth", "--out", data, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (data / "toy_synth" / "val.csv").read_text().count("\n") == 8  # the family's smoke size

    r = hcbench("--quiet", "run", "--backbone", "toy_vit", "--card", CARD, "--tier", "smoke", "--root", data,
                "--out", results, "--work-dir", tmp_path / "runs", "--device", "cpu", "--no-leaderboard", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    record = json.loads((results / "adhoc" / "toy_vit" / "toy_bright.smoke.json").read_text())  # <card>.<tier>.json
    assert record["status"] == "ok" and record["card"]["family"] == "toy_bright"
    metrics = record["metrics"]
    assert set(metrics) == {"mae", "within"} and 0 <= metrics["mae"] <= 1

    # `hcbench score` recomputes the run's numbers from its predictions file: one code path
    pred = results / "adhoc" / "toy_vit" / record["predictions"]["file"]
    r = hcbench("score", "toy_bright", "--card", CARD, "--tier", "smoke", "--gt", data / "toy_synth", "--pred", pred,
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == pytest.approx(metrics, abs=1e-12)
    r = hcbench("score", "toy_bright", "--card", CARD, "--gt", data / "toy_synth", "--pred", pred, "--tolerance", "0.2",
                cwd=tmp_path)
    assert r.returncode == 2 and "fixes the tolerance" in r.stderr

    # the leaderboard ranks it with the family's own metric direction (MAE: lower is better)
    r = hcbench("leaderboard", "--results", results, "--format", "json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    board = json.loads(r.stdout)
    assert board["higher_is_better"] == {"toy_bright": False}
    row = board["rows"][0]
    assert row["backbone"] == "toy_vit" and row["family_means"]["toy_bright"] == pytest.approx(1 - metrics["mae"])


def test_a_misspelt_option_in_a_plugin_card_names_card_and_key(tmp_path: Path):
    bad = tmp_path / "toy_bright.yaml"
    bad.write_text(CARD.read_text().replace("tolerance: 0.1", "tolerence: 0.1"))
    r = hcbench("score", "toy_bright", "--card", bad, "--gt", tmp_path, "--pred", tmp_path / "p.json", cwd=tmp_path)
    assert r.returncode == 2
    assert str(bad) in r.stderr and "unknown eval.options key 'tolerence'" in r.stderr and "tolerance" in r.stderr
