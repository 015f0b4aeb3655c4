"""``hcbench regress``: pairing, direction-aware tolerance, exit codes, JUnit XML and Markdown."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import results_fixtures as fx  # noqa: E402

from hcbench.cli import main as cli_main  # noqa: E402
from hcbench.results.regress import compare, junit_xml, markdown_summary  # noqa: E402
from hcbench.results.store import record_path, write_record  # noqa: E402

BASE = {"vit_tiny": {"coco_pose": {"AP": 0.700, "AP50": 0.900, "AP75": 0.780, "AR": 0.760},
                     "citypersons_det": {"MR-2": 0.120, "AP": 0.900}}}


@pytest.fixture(autouse=True)
def _fixture_cards(monkeypatch):
    monkeypatch.setenv("HCBENCH_TASKS", str(fx.TASKS))


def _tree(root: Path, values: dict, checkpoint: str | None = None, **kw) -> Path:
    for backbone, cards in values.items():
        for card, metrics in cards.items():
            rec = fx.make_record(backbone, card, metrics, checkpoint=checkpoint, **kw)
            write_record(record_path(root, "mini", backbone, card), rec)
    return root


def _with(**changes) -> dict:
    """BASE with ``card__metric=value`` changes for vit_tiny."""
    out = {"vit_tiny": {c: dict(m) for c, m in BASE["vit_tiny"].items()}}
    for key, v in changes.items():
        card, metric = key.split("__")
        out["vit_tiny"][card][metric.replace("MR2", "MR-2")] = v
    return out


def _run(tmp_path, current: dict, metrics="primary", tolerance=0.5, **kw):
    base = _tree(tmp_path / "base", BASE, checkpoint="a" * 64)
    cur = _tree(tmp_path / "cur", current, checkpoint="b" * 64, **kw)  # another checkpoint: still paired
    code = _cli(base, cur, tolerance=tolerance, metrics=metrics, junit=tmp_path / "r.xml", markdown=tmp_path / "r.md")
    return code, compare(base, cur, tolerance, metrics)


def _cli(base: Path, cur: Path, tolerance=0.5, metrics="primary", junit=None, markdown=None) -> int:
    argv = ["regress", "--baseline", str(base), "--current", str(cur), "--tolerance", str(tolerance),
            "--metrics", metrics]
    argv += ["--junit", str(junit)] if junit else []
    argv += ["--markdown", str(markdown)] if markdown else []
    return cli_main(argv)


# --------------------------------------------------------------------------- exit codes
def test_improvement_exits_0(tmp_path, capsys):
    code, cmp = _run(tmp_path, _with(coco_pose__AP=0.720, citypersons_det__MR2=0.100))
    assert code == 0
    assert [(d.card, d.metric, d.status, round(d.points, 6)) for d in cmp.deltas] == [
        ("citypersons_det", "MR-2", "improved", -2.0), ("coco_pose", "AP", "improved", 2.0)]
    out = capsys.readouterr().out
    assert "+2.00" in out and "-2.00" in out and out.rstrip().endswith("(tolerance 0.5 points)")
    assert out.rstrip().splitlines()[-1].startswith("PASS: 2 metric(s) compared, 0 regressed, 2 improved")


def test_changes_within_tolerance_exit_0_in_both_directions(tmp_path):
    # AP -0.4 points and MR-2 +0.5 points (worse, but exactly the tolerance)
    code, cmp = _run(tmp_path, _with(coco_pose__AP=0.696, citypersons_det__MR2=0.125))
    assert code == 0 and [d.status for d in cmp.deltas] == ["within", "within"]


@pytest.mark.parametrize("change, card", [
    ({"coco_pose__AP": 0.690}, "coco_pose"),  # AP fell 1.0 point
    ({"citypersons_det__MR2": 0.126}, "citypersons_det"),  # MR-2 rose 0.6 points: worse
])
def test_regression_beyond_tolerance_exits_1(tmp_path, change, card):
    code, cmp = _run(tmp_path, _with(**change))
    assert code == 1
    assert [d.card for d in cmp.regressions] == [card]


def test_lower_is_better_falling_is_not_a_regression(tmp_path):
    code, cmp = _run(tmp_path, _with(citypersons_det__MR2=0.100))
    assert code == 0 and cmp.deltas[0].status == "improved"


def test_tolerance_is_configurable(tmp_path):
    code, _ = _run(tmp_path, _with(coco_pose__AP=0.690), tolerance=1.5)
    assert code == 0


def test_metrics_all_checks_secondary_metrics(tmp_path):
    current = _with(coco_pose__AR=0.700)  # AR fell 6 points, AP unchanged
    assert _run(tmp_path / "p", current, metrics="primary")[0] == 0
    code, cmp = _run(tmp_path / "a", current, metrics="all")
    assert code == 1 and [(d.card, d.metric) for d in cmp.regressions] == [("coco_pose", "AR")]
    assert len(cmp.deltas) == 6  # 4 coco_pose + 2 citypersons_det metrics


def test_failed_current_run_is_a_regression(tmp_path):
    base = _tree(tmp_path / "base", BASE)
    cur = _tree(tmp_path / "cur", {"vit_tiny": {"citypersons_det": BASE["vit_tiny"]["citypersons_det"]}})
    rec = fx.make_record("vit_tiny", "coco_pose", {}, error="CUDA out of memory")
    write_record(record_path(cur, "mini", "vit_tiny", "coco_pose"), rec)
    cmp = compare(base, cur)
    assert cmp.exit_code == 1 and cmp.regressions[0].status == "failed"
    assert "CUDA out of memory" in cmp.regressions[0].note


# --------------------------------------------------------------------------- unusable input
def test_missing_folder_exits_2(tmp_path, capsys):
    base = _tree(tmp_path / "base", BASE)
    assert _cli(base, tmp_path / "nope", junit=tmp_path / "r.xml") == 2
    assert "current folder" in capsys.readouterr().err
    root = ET.parse(tmp_path / "r.xml").getroot()  # CI still gets a report saying why
    assert root.get("errors") == "1" and "does not exist" in root.find(".//error").get("message")


def test_malformed_record_exits_2_naming_the_file(tmp_path, capsys):
    base = _tree(tmp_path / "base", BASE)
    cur = _tree(tmp_path / "cur", BASE)
    bad = record_path(cur, "mini", "vit_tiny", "coco_pose")
    bad.write_text(bad.read_text().replace('"AP": 0.7', '"AP": 7.0'))
    assert cli_main(["regress", "--baseline", str(base), "--current", str(cur)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a fraction" in err


def test_no_comparable_pairs_exits_2(tmp_path, capsys):
    base = _tree(tmp_path / "base", BASE)
    cur = _tree(tmp_path / "cur", {"vit_small": BASE["vit_tiny"]})
    cmp = compare(base, cur)
    assert cmp.exit_code == 2 and "no comparable record pairs" in cmp.not_comparable[0]
    assert any("only in the baseline" in n for n in cmp.notes) and any("only in current" in n for n in cmp.notes)
    assert cli_main(["regress", "--baseline", str(base), "--current", str(tmp_path / "empty")]) == 2


def test_card_sha_mismatch_is_not_comparable_naming_the_card(tmp_path):
    base = _tree(tmp_path / "base", BASE)
    cur = _tree(tmp_path / "cur", BASE)
    rec = fx.make_record("vit_tiny", "coco_pose", BASE["vit_tiny"]["coco_pose"], card_sha256="f" * 64)
    write_record(record_path(cur, "mini", "vit_tiny", "coco_pose"), rec)
    cmp = compare(base, cur)
    assert cmp.exit_code == 2
    assert len(cmp.not_comparable) == 1
    assert cmp.not_comparable[0].startswith("vit_tiny / coco_pose (full, seed 0): not comparable, the card changed")
    assert [d.card for d in cmp.deltas] == ["citypersons_det"]  # the rest is still compared and shown


def test_tier_and_seed_are_part_of_the_pairing(tmp_path):
    base = _tree(tmp_path / "base", BASE)
    cur = _tree(tmp_path / "cur", _with(coco_pose__AP=0.1), seed=1)  # another seed: not the same run
    cmp = compare(base, cur)
    assert cmp.exit_code == 2 and not cmp.deltas


def test_bad_arguments_are_unusable_input(tmp_path):
    base = _tree(tmp_path / "base", BASE)
    assert _cli(base, base, tolerance=-1.0) == 2


# --------------------------------------------------------------------------- reports
def test_junit_xml_has_one_testcase_per_card_metric(tmp_path):
    code, cmp = _run(tmp_path, _with(coco_pose__AP=0.690, coco_pose__AR=0.770), metrics="all")
    assert code == 1
    root = ET.parse(tmp_path / "r.xml").getroot()
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert root.tag == "testsuites" and suite.get("tests") == "6" and suite.get("failures") == "1"
    assert sorted(c.get("name") for c in cases) == sorted(
        f"{card}/{m} [full, seed 0]" for card, ms in BASE["vit_tiny"].items() for m in ms)
    failed = [c for c in cases if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["coco_pose/AP [full, seed 0]"]
    msg = failed[0].find("failure").get("message")
    assert msg.startswith("regressed:") and "baseline 70.00, current 69.00, delta -1.00 points" in msg
    assert junit_xml(cmp).startswith(b"<?xml")


def test_markdown_summary(tmp_path):
    code, cmp = _run(tmp_path, _with(coco_pose__AP=0.690, citypersons_det__MR2=0.119))
    md = (tmp_path / "r.md").read_text()
    assert md == markdown_summary(cmp)
    assert md.startswith("## hcbench regress — FAIL: 2 metric(s) compared, 1 regressed, 0 improved")
    assert "| vit_tiny | coco_pose | full | 0 | AP | 70.00 | 69.00 | -1.00 | ❌ regressed |" in md
    assert "| vit_tiny | citypersons_det | full | 0 | MR-2 ↓ | 12.00 | 11.90 | -0.10 | ✅ within |" in md
