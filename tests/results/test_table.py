"""Paper tables: golden files, numbers against the fixture values, bold/underline placement, pdflatex."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import results_fixtures as fx  # noqa: E402

from hcbench.cli import main as cli_main  # noqa: E402
from hcbench.results.table import rank_cells, render_table  # noqa: E402


@pytest.fixture(autouse=True)
def _fixture_cards(monkeypatch):
    monkeypatch.setenv("HCBENCH_TASKS", str(fx.TASKS))


def _body_rows(latex: str) -> dict[str, list[str]]:
    body = latex.split("\\midrule\n")[1].split("\\bottomrule")[0]
    rows = {}
    for line in body.strip().splitlines():
        cells = [c.strip() for c in line.rstrip("\\ ").split(" & ")]
        rows[cells[0].replace("\\_", "_")] = cells[1:]
    return rows


def _plain(cell: str) -> str:
    return re.sub(r"\\textbf\{(.*)\}|\\underline\{(.*)\}", lambda m: m.group(1) or m.group(2), cell).replace("$^{*}$", "")


def _mark(cell: str) -> str:
    return "bold" if cell.startswith("\\textbf") else "under" if cell.startswith("\\underline") else ""


# --------------------------------------------------------------------------- golden files
@pytest.mark.parametrize("metrics", ["primary", "all"])
def test_latex_equals_checked_in_expected(metrics):
    got = render_table(fx.TREE, suite=fx.SUITE, fmt="latex", metrics=metrics)
    assert got + "\n" == (FIXTURES / f"expected_table_{metrics}.tex").read_text()


@pytest.mark.parametrize("metrics", ["primary", "all"])
def test_markdown_equals_checked_in_expected(metrics):
    got = render_table(fx.TREE, suite=fx.SUITE, fmt="markdown", metrics=metrics)
    assert got + "\n" == (FIXTURES / f"expected_table_{metrics}.md").read_text()


def test_fixture_tree_is_what_the_builder_writes(tmp_path):
    # the checked-in records are exactly fx.VALUES (so the numbers below are checked against the source)
    fx.write_tree(tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert files == sorted(p.relative_to(fx.TREE) for p in fx.TREE.rglob("*.json"))
    for rel in files:
        assert (tmp_path / rel).read_text() == (fx.TREE / rel).read_text(), rel


# --------------------------------------------------------------------------- numbers
def _expected_primary() -> dict[str, dict[str, float]]:
    """Independent arithmetic over fx.VALUES: seed means, family means with 1 - MR-2, overall mean."""
    primary = {"coco_pose": "AP", "mpii_pose": "PCKh", "lip_parsing": "mIoU", "crowdhuman_det": "AP",
               "citypersons_det": "MR-2", "market_reid": "mAP", "pa100k_attr": "mA"}
    fams = {"pose": ["coco_pose", "mpii_pose"], "parsing": ["lip_parsing"],
            "detection": ["crowdhuman_det", "citypersons_det"], "reid": ["market_reid"], "attributes": ["pa100k_attr"]}
    out = {}
    for b, cards in fx.VALUES.items():
        vals = {}
        for c, m in primary.items():
            seeds = [cards[c][m]] if c in cards else []
            seeds += [v[m] for (bb, cc, _), v in fx.EXTRA_SEEDS.items() if bb == b and cc == c]
            vals[c] = sum(seeds) / len(seeds) if seeds else math.nan
        fam_means = {}
        for f, cs in fams.items():
            xs = [(1 - vals[c]) if primary[c] == "MR-2" else vals[c] for c in cs if not math.isnan(vals[c])]
            fam_means[f] = sum(xs) / len(xs) if xs else math.nan  # a family with no result stays missing
        vals["mean_pose"] = fam_means["pose"]
        vals["mean_detection"] = fam_means["detection"]
        present = [v for v in fam_means.values() if not math.isnan(v)]
        vals["mean"] = sum(present) / len(present)
        out[b] = vals
    return out


def test_latex_numbers_match_independent_arithmetic():
    rows = _body_rows(render_table(fx.TREE, suite=fx.SUITE, fmt="latex"))
    want = _expected_primary()
    order = ["coco_pose", "mpii_pose", "mean_pose", "lip_parsing", "crowdhuman_det", "citypersons_det",
             "mean_detection", "market_reid", "pa100k_attr", "mean"]
    assert set(rows) == set(want)
    for b, cells in rows.items():
        params, gflops = fx.BACKBONES[b]
        assert cells[0] == f"{params / 1e6:.1f}" and float(cells[1]) == float(f"{gflops:.3g}")  # 3 significant
        for key, cell in zip(order, cells[2:], strict=True):
            v = want[b][key]
            assert _plain(cell) == ("--" if math.isnan(v) else f"{100 * v:.1f}"), (b, key)
    # spot values written out: seed mean 70.6, Detection mean (87.0 + 100 - 13.1) / 2, starred incomplete means
    assert _plain(rows["vit_tiny"][2]) == "70.6"
    assert _plain(rows["timm:resnet50"][8]) == "86.9"
    assert rows["vit_small"][4].endswith("$^{*}$") and rows["vit_small"][11].endswith("$^{*}$")
    # rows ordered by overall mean, best first
    assert list(rows) == ["student:dpal_tiny", "timm:resnet50", "vit_tiny", "vit_small"]


def test_all_metrics_columns_and_values():
    latex = render_table(fx.TREE, suite=fx.SUITE, fmt="latex", metrics="all")
    rows = _body_rows(latex)
    # coco_pose: AP AP50 AP75 AR in the card's order, each averaged over the two vit_tiny seeds
    s0, s1 = fx.VALUES["vit_tiny"]["coco_pose"], fx.EXTRA_SEEDS[("vit_tiny", "coco_pose", 1)]
    got = [_plain(c) for c in rows["vit_tiny"][2:6]]
    assert got == [f"{50 * (s0[m] + s1[m]):.1f}" for m in ("AP", "AP50", "AP75", "AR")]
    assert r"\multicolumn{4}{c}{COCO}" in latex and r"\cmidrule(lr){4-7}" in latex


# --------------------------------------------------------------------------- marks
def test_rank_cells_directions_ties_and_missing():
    assert rank_cells([0.5, 0.7, 0.6], higher=True) == [0, 1, 2]
    assert rank_cells([0.5, 0.7, 0.6], higher=False) == [1, 0, 2]
    # ties at one decimal share the mark; the second best is the next distinct printed value
    assert rank_cells([0.5504, 0.5496, 0.521, 0.562], higher=True) == [2, 2, 0, 1]
    assert rank_cells([0.1, math.nan, 0.2, 0.3], higher=False) == [1, 0, 2, 0]
    assert rank_cells([0.9, 0.8, 0.7], higher=True, skip=[True, False, False]) == [0, 1, 0]
    assert rank_cells([0.9, math.nan], higher=True) == [0, 0]  # one value: nothing to compare
    assert rank_cells([0.9, 0.8], higher=True) == [1, 0]  # two values: a best, no "second"
    assert rank_cells([0.6, 0.6, 0.6], higher=True) == [0, 0, 0]  # all equal: no mark
    assert rank_cells([0.6, 0.6, 0.5], higher=True) == [1, 1, 2]  # a shared best; the next value is second



def test_bold_and_underline_cells_for_higher_and_lower_is_better(tmp_path):
    values = {  # AP: higher wins; MR-2: lower wins (citypersons primary); crowdhuman AP higher
        "a": {"citypersons_det": {"MR-2": 0.30, "AP": 0.80}, "crowdhuman_det": {"AP": 0.70, "MR-2": 0.5, "JI": 0.6}},
        "b": {"citypersons_det": {"MR-2": 0.10, "AP": 0.90}, "crowdhuman_det": {"AP": 0.60, "MR-2": 0.4, "JI": 0.6}},
        "c": {"citypersons_det": {"MR-2": 0.20, "AP": 0.85}, "crowdhuman_det": {"AP": 0.80, "MR-2": 0.6, "JI": 0.6}},
    }
    fx.write_tree(tmp_path, values, {}, suite="dets")
    rows = _body_rows(render_table(tmp_path, suite="dets", fmt="latex", metrics="all"))
    # no suite file "dets": cards by family then name -> citypersons MR-2, AP | crowdhuman AP, MR-2, JI |
    # detection mean | overall mean
    marks = {b: [_mark(c) for c in cells[2:]] for b, cells in rows.items()}
    assert [marks[b][0] for b in "abc"] == ["", "bold", "under"]  # CityPersons MR-2: 10 < 20 < 30
    assert [marks[b][1] for b in "abc"] == ["", "bold", "under"]  # CityPersons AP: 90 > 85 > 80
    assert [marks[b][2] for b in "abc"] == ["under", "", "bold"]  # CrowdHuman AP: 80 > 70 > 60
    assert [marks[b][3] for b in "abc"] == ["under", "bold", ""]  # CrowdHuman MR-2: 40 < 50 < 60
    assert [marks[b][4] for b in "abc"] == ["", "", ""]  # JI all tied at 60.0: nothing stands out
    # detection mean = (1 - MR-2_citypersons + AP_crowdhuman) / 2: a 70.0, b 75.0, c 80.0
    assert [_plain(rows[b][7]) for b in "abc"] == ["70.0", "75.0", "80.0"]
    assert [marks[b][5] for b in "abc"] == ["", "under", "bold"]
    md = render_table(tmp_path, suite="dets", fmt="markdown", metrics="all")
    line_b = next(line for line in md.splitlines() if line.startswith("| b |"))
    assert "| **10.0** |" in line_b and "| **40.0** |" in line_b and "| <u>75.0</u> |" in line_b


def test_backbone_selection_order_and_marks_among_shown(tmp_path):
    latex = render_table(fx.TREE, suite=fx.SUITE, fmt="latex", backbones=["vit_tiny", "timm:resnet50"])
    rows = _body_rows(latex)
    assert list(rows) == ["vit_tiny", "timm:resnet50"]
    # COCO AP: 71.8 beats 70.6 among the two rows shown; two rows -> bold only
    assert rows["timm:resnet50"][2] == r"\textbf{71.8}" and rows["vit_tiny"][2] == "70.6"
    assert "Incomplete" not in latex  # vit_small (incomplete) is not shown
    with pytest.raises(ValueError, match="no results for backbone.*vit_huge"):
        render_table(fx.TREE, suite=fx.SUITE, backbones=["vit_huge"])


def test_markdown_is_a_github_table():
    md = render_table(fx.TREE, suite=fx.SUITE, fmt="markdown")
    lines = md.split("\n\n")[0].splitlines()
    ncols = lines[0].count(" | ") + 1
    assert re.fullmatch(r"\|:---\|(---:\|)+", lines[1]) and lines[1].count("|") == ncols + 1
    for line in lines[2:]:
        assert line.startswith("| ") and line.endswith(" |") and line.count(" | ") + 1 == ncols
    dpal = next(line for line in lines if line.startswith("| student:dpal_tiny"))
    assert "| **91.2** |" in dpal and "| <u>72.9</u> |" in dpal and "| **10.4** |" in dpal
    assert "CityPersons MR⁻² ↓" in lines[0]
    assert "vit_small lacks MPII, Market" in md


def test_cli_table_prints_the_table(capsys):
    rc = cli_main(["table", "--results", str(fx.TREE), "--suite", fx.SUITE, "--format", "markdown",
                   "--backbones", "vit_tiny,vit_small", "--metrics", "primary"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.rstrip("\n") == render_table(fx.TREE, suite=fx.SUITE, fmt="markdown", backbones=["vit_tiny", "vit_small"])


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        render_table(tmp_path / "nope", suite="mini")
    with pytest.raises(ValueError, match="no result records"):
        render_table(tmp_path, suite="mini")
    with pytest.raises(ValueError, match="latex.*markdown"):
        render_table(fx.TREE, suite=fx.SUITE, fmt="html")


# --------------------------------------------------------------------------- pdflatex
@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (Debian: texlive-latex-base texlive-latex-recommended)")
@pytest.mark.parametrize("metrics", ["primary", "all"])
def test_latex_compiles_with_pdflatex(tmp_path, metrics):
    (tmp_path / "table.tex").write_text(render_table(fx.TREE, suite=fx.SUITE, fmt="latex", metrics=metrics))
    (tmp_path / "doc.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage{graphicx}\n"
                                      "\\begin{document}\n\\input{table}\n\\end{document}\n")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "doc.tex"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert "Misplaced" not in log and "Extra alignment tab" not in log
