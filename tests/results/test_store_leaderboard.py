"""Result records (atomic store, validation) and the leaderboard in every format."""

import json
from pathlib import Path

import pytest

from hcbench.cli import main
from hcbench.results.leaderboard import leaderboard_frame, render
from hcbench.results.schema import ResultRecord
from hcbench.results.store import (
    RecordError,
    load_records,
    read_record,
    record_path,
    records_frame,
    write_record,
)


def make_record(backbone: str, card: str, family: str, metrics: dict, primary: str, tier="smoke", seed=0,
                params=5_523_648) -> ResultRecord:
    return ResultRecord.model_validate({
        "schema": "hcbench.result/1",
        "backbone": {"spec": backbone, "checkpoint_sha256": None, "params": params, "gflops": 1.22},
        "card": {"name": card, "version": 1, "sha256": "a" * 64, "tier": tier, "family": family},
        "dataset": {"name": card.split("_")[0], "split": "val", "fingerprint": "sha256:" + "b" * 64},
        "metrics": metrics, "primary": primary,
        "run": {"seed": seed, "started": "2026-11-25T10:00:00Z", "wall_s": 12.5, "device": "cpu",
                "world_size": 1, "hcbench": "0.1.0", "packages": {"torch": "2.14.1"}},
        "predictions": {"file": f"{card}.predictions.json", "sha256": "c" * 64},
    })


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    cells = {
        "vit_tiny": {"coco_pose": 0.70, "lip_parsing": 0.50, "citypersons_det": 0.12, "market_reid": 0.80},
        "vit_small": {"coco_pose": 0.75, "lip_parsing": 0.55, "market_reid": 0.85},  # no citypersons result
    }
    fam = {"coco_pose": ("pose", "AP"), "lip_parsing": ("parsing", "mIoU"), "citypersons_det": ("detection", "MR-2"),
           "market_reid": ("reid", "mAP")}
    for b, row in cells.items():
        for c, v in row.items():
            f, m = fam[c]
            write_record(record_path(root, "hcb15", b, c), make_record(b, c, f, {m: v, "extra": 0.5}, m))
    return root


def test_atomic_write_and_round_trip(tree: Path):
    path = record_path(tree, "hcb15", "vit_tiny", "coco_pose")
    assert path == tree / "hcb15" / "vit_tiny" / "coco_pose.json"
    rec = read_record(path)
    assert rec.metrics["AP"] == 0.70 and rec.identity == (None, "a" * 64, "smoke", 0)
    assert not list(path.parent.glob(".*.tmp"))  # no temp files left behind
    assert len(load_records(tree)) == 7
    frame = records_frame(tree)
    assert set(frame.columns) >= {"backbone", "card", "metric", "value"} and len(frame) == 14


def test_malformed_records_are_rejected_with_the_file_name(tree: Path):
    bad = tree / "hcb15" / "vit_tiny" / "broken_card.json"
    bad.write_text(json.dumps({**make_record("vit_tiny", "x", "pose", {"AP": 0.5}, "AP").to_json_dict(),
                               "metrics": {"AP": 71.2}}))
    with pytest.raises(RecordError, match=r"(?s)broken_card\.json.*not a fraction"):
        load_records(tree)
    bad.write_text("{not json")
    with pytest.raises(RecordError, match=r"broken_card\.json"):
        load_records(tree)
    with pytest.raises(ValueError, match="primary metric"):
        make_record("vit_tiny", "x", "pose", {"AR": 0.5}, "AP")


def test_leaderboard_marks_missing_and_incomplete(tree: Path):
    board = leaderboard_frame(tree, tier="smoke")
    assert board.cards == ["coco_pose", "lip_parsing", "citypersons_det", "market_reid"]
    assert board.values.loc["vit_small", "citypersons_det"] != board.values.loc["vit_small", "citypersons_det"]  # NaN
    # MR-2 is lower-is-better: it enters the detection mean as 1 - x
    assert board.family_means.loc["vit_tiny", "detection"] == pytest.approx(0.88)
    assert board.overall.loc["vit_tiny"] == pytest.approx((0.70 + 0.50 + 0.88 + 0.80) / 4)
    # the incomplete row is averaged over what exists and flagged, never as if the gap were zero
    assert board.overall.loc["vit_small"] == pytest.approx((0.75 + 0.55 + 0.85) / 3)
    assert bool(board.complete.loc["vit_tiny"]) and not bool(board.complete.loc["vit_small"])

    text = render(board, "table")
    small = next(line for line in text.splitlines() if line.startswith("vit_small"))
    assert "—" in small and small.rstrip().endswith("71.7*")
    md = render(board, "markdown")
    assert md.splitlines()[0].startswith("| backbone | params (M) | coco_pose AP |")
    assert "| vit_small | 5.5 | 75.0 | 55.0 | — | 85.0 |" in md
    csv = render(board, "csv").splitlines()
    assert csv[2].startswith("vit_small,5.5,75.0,55.0,—,85.0")
    data = json.loads(render(board, "json"))
    row = {r["backbone"]: r for r in data["rows"]}["vit_small"]
    assert row["cards"]["citypersons_det"] is None and row["complete"] is False
    assert data["higher_is_better"]["citypersons_det"] is False
    assert "<table" in render(board, "html")
    assert "vit_small" in render(board, "table", tty=True)


def test_leaderboard_cli(tree: Path, capsys):
    assert main(["leaderboard", "--results", str(tree), "--format", "markdown"]) == 0
    assert "| vit_tiny |" in capsys.readouterr().out
