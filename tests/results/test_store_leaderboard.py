"""Result records (atomic store, validation) and the leaderboard in every format."""

import json
from pathlib import Path

import pytest

from hcbench.cli import main
from hcbench.results.board_render import render
from hcbench.results.leaderboard import leaderboard_frame
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
    # one-card families: no family mean column repeating the card
    assert md.splitlines()[0] == ("| backbone | params (M) | seeds | coco_pose AP | lip_parsing mIoU | "
                                  "citypersons_det MR-2 ↓ | market_reid mAP | mean |")
    assert "| vit_small | 5.52 | 0 | 75.0 | 55.0 | — | 85.0 | 71.7* |" in md
    assert "every record is shown" in md
    csv = render(board, "csv").splitlines()
    assert csv[2].startswith("vit_small,5.52,0,75.0,55.0,—,85.0")
    data = json.loads(render(board, "json"))
    row = {r["backbone"]: r for r in data["rows"]}["vit_small"]
    assert row["cards"]["citypersons_det"] is None and row["complete"] is False
    assert row["seeds"] == [0] and row["n"]["coco_pose"] == 1 and row["n"]["citypersons_det"] == 0
    assert data["higher_is_better"]["citypersons_det"] is False and data["hidden"] == []
    assert "<table" in render(board, "html")
    assert "vit_small" in render(board, "table", tty=True, width=120)


def test_leaderboard_cli(tree: Path, capsys):
    assert main(["leaderboard", "--results", str(tree), "--format", "markdown"]) == 0
    assert "| vit_tiny |" in capsys.readouterr().out


# --------------------------------------------------------------------------- honest aggregation
def _write(root: Path, folder: str, backbone: str, card: str, family: str, metric: str, value: float, **kw) -> Path:
    rec = make_record(backbone, card, family, {metric: value}, metric, **kw)
    path = root / folder / backbone.replace(":", "-") / f"{card}.json"
    write_record(path, rec)
    return path


def test_two_seeds_are_one_row_with_n_and_std(tmp_path: Path):
    """Seeds of one backbone are averaged, and the row says so: its seeds, mean ± sample std,
    and n on a cell with fewer seeds than its row."""
    root = tmp_path / "results"
    for seed, (pose, reid) in {0: (0.70, 0.40), 1: (0.72, 0.44)}.items():
        folder = "smoke" if seed == 0 else f"seed-{seed}/smoke"
        _write(root, folder, "vit_tiny", "coco_pose", "pose", "AP", pose, seed=seed)
        _write(root, folder, "vit_tiny", "market_reid", "reid", "mAP", reid, seed=seed)
    _write(root, "smoke", "vit_tiny", "lip_parsing", "parsing", "mIoU", 0.30, seed=0)  # seed 0 only
    board = leaderboard_frame(root)
    assert board.backbones == ["vit_tiny"] and board.seeds["vit_tiny"] == [0, 1]
    assert board.values.loc["vit_tiny", "coco_pose"] == pytest.approx(0.71)
    assert board.std.loc["vit_tiny", "coco_pose"] == pytest.approx(0.0141421356, abs=1e-9)  # stdev(0.70, 0.72)
    assert int(board.counts.loc["vit_tiny", "lip_parsing"]) == 1
    assert board.overall.loc["vit_tiny"] == pytest.approx((0.71 + 0.30 + 0.42) / 3)
    # the overall ± needs every card at every seed: lip_parsing has one seed, so none is claimed
    assert board.overall_std.loc["vit_tiny"] != board.overall_std.loc["vit_tiny"]
    md = render(board, "markdown")
    assert "| vit_tiny | 5.52 | 0,1 | 71.0 ± 1.4 | 30.0 (n=1) | 42.0 ± 2.8 | 47.7 |" in md
    assert "mean ± sample std over the row's seeds" in md

    _write(root, "seed-1/smoke", "vit_tiny", "lip_parsing", "parsing", "mIoU", 0.34, seed=1)
    board = leaderboard_frame(root)
    per_seed = [(0.70 + 0.30 + 0.40) / 3, (0.72 + 0.34 + 0.44) / 3]
    assert board.overall_std.loc["vit_tiny"] == pytest.approx(abs(per_seed[0] - per_seed[1]) / 2 ** 0.5)
    data = json.loads(render(board, "json"))["rows"][0]
    assert data["std"]["lip_parsing"] == pytest.approx(0.0282842712) and data["n"]["lip_parsing"] == 2


def test_the_same_run_in_two_folders_is_never_averaged(tmp_path: Path):
    """A user's seed-0 run and a committed seed-0 run of the same backbone: two rows, named by folder."""
    root = tmp_path / "results"
    _write(root, "smoke", "vit_tiny", "coco_pose", "pose", "AP", 0.50)
    _write(root, "student-recipe/smoke", "vit_tiny", "coco_pose", "pose", "AP", 0.60)
    _write(root, "student-recipe/seed-1/smoke", "vit_tiny", "coco_pose", "pose", "AP", 0.62, seed=1)
    board = leaderboard_frame(root)
    assert sorted(board.backbones) == ["vit_tiny [smoke]", "vit_tiny [student-recipe]"]
    assert board.values.loc["vit_tiny [smoke]", "coco_pose"] == pytest.approx(0.50)
    assert board.values.loc["vit_tiny [student-recipe]", "coco_pose"] == pytest.approx(0.61)
    assert board.seeds["vit_tiny [student-recipe]"] == [0, 1]
    text = render(board, "table")
    assert "vit_tiny [smoke]" in text and "own row" in text
    assert "vit_tiny [smoke]" in render(board, "table", tty=True, width=100)  # not eaten as rich markup

    # two checkpoints under one spec (a file replaced in place) are two rows as well
    root2 = tmp_path / "r2"
    for sha, v in (("1" * 64, 0.4), ("2" * 64, 0.5)):
        rec = make_record("file:model.safetensors", "coco_pose", "pose", {"AP": v}, "AP")
        rec.backbone.checkpoint_sha256 = sha
        write_record(root2 / sha[:4] / "file-model" / "coco_pose.json", rec)
    assert sorted(leaderboard_frame(root2).backbones) == ["file:model.safetensors @11111111",
                                                          "file:model.safetensors @22222222"]


def test_every_hidden_record_is_counted(tmp_path: Path):
    from hcbench.cards import get_card, resolve

    root = tmp_path / "results"
    current = resolve(get_card("synth_pose"), "smoke").sha256
    shown = make_record("vit_tiny", "synth_pose", "pose", {"PCK": 0.5}, "PCK")
    shown.card.sha256 = current
    write_record(root / "smoke" / "vit_tiny" / "synth_pose.json", shown)
    old = make_record("vit_tiny", "synth_pose", "pose", {"PCK": 0.9}, "PCK", seed=1)  # an older card version
    write_record(root / "old" / "vit_tiny" / "synth_pose.json", old)
    _write(root, "smoke", "vit_tiny", "synth_det", "detection", "AP", 0.2, tier="full")
    failed = ResultRecord.model_validate({**make_record("vit_tiny", "synth_reid", "reid", {"mAP": 0.1}, "mAP")
                                          .to_json_dict(), "metrics": {}, "status": "failed", "error": "boom"})
    write_record(root / "smoke" / "vit_tiny" / "synth_reid.json", failed)
    _write(root, "other", "vit_small", "synth_pose", "pose", "PCK", 0.4)

    board = leaderboard_frame(root)
    assert board.tier == "smoke" and board.values.loc["vit_tiny", "synth_pose"] == pytest.approx(0.5)
    reasons = {reason: n for reason, n, _ in board.hidden}
    assert any("another tier" in r for r in reasons) and any("failed" in r for r in reasons)
    assert any("version of their card" in r for r in reasons)
    assert board.hidden_total == 3
    text = render(board, "table")
    assert "not shown: " in text and "full: 1 (--tier full)" in text and "vit_tiny/synth_reid" in text

    board = leaderboard_frame(root, suite="smoke")
    reasons = {reason: (n, d) for reason, n, d in board.hidden}
    assert reasons["outside suite smoke"] == (2, "old/: 1, other/: 1")
    assert board.hidden_total == 4 and "4" not in board.backbones
    assert "2 records outside suite smoke (old/: 1, other/: 1)" in render(board, "markdown")


def test_records_made_by_other_code_are_counted_in_a_footnote(tmp_path: Path):
    """A record's numbers are only this checkout's when its run.code is the card's current code
    fingerprint: the others are shown, counted and named as such."""
    from hcbench.cards import get_card, resolve
    from hcbench.codeprint import card_code

    root = tmp_path / "results"
    for backbone, code in (("vit_tiny", card_code("synth_pose")), ("vit_small", "sha256:" + "0" * 64),
                           ("vit_base", None)):
        rec = make_record(backbone, "synth_pose", "pose", {"PCK": 0.5}, "PCK")
        rec.card.sha256 = resolve(get_card("synth_pose"), "smoke").sha256
        rec.run.code = code
        write_record(root / "smoke" / backbone / "synth_pose.json", rec)
    board = leaderboard_frame(root)
    assert board.other_code == 2 and len(board.backbones) == 3
    assert "2 shown records were made by other code than this hcbench's" in render(board, "table")
    assert json.loads(render(board, "json"))["made_by_other_code"] == 2


# --------------------------------------------------------------------------- terminal width
@pytest.fixture
def wide_tree(tmp_path: Path) -> Path:
    root = tmp_path / "results"
    cards = {"coco_pose": ("pose", "AP"), "mpii_pose": ("pose", "PCKh"), "crowdpose_pose": ("pose", "AP"),
             "lip_parsing": ("parsing", "mIoU"), "cihp_parsing": ("parsing", "mIoU"),
             "market_reid": ("reid", "mAP"), "citypersons_det": ("detection", "MR-2")}
    for i, b in enumerate(["vit_tiny", "student:vit_tiny_feature-kd", "vit_small"]):
        for j, (c, (f, m)) in enumerate(cards.items()):
            _write(root, "hcb15", b, c, f, m, 0.3 + 0.05 * i + 0.01 * j, seed=0)
            _write(root, "hcb15-s1", b, c, f, m, 0.31 + 0.05 * i + 0.01 * j, seed=1)
    return root


@pytest.mark.parametrize("tty", [False, True])
def test_leaderboard_fits_the_terminal(wide_tree: Path, tty: bool):
    from rich.text import Text

    def cell_len(line: str) -> int:  # display columns, colour codes excluded
        return Text.from_ansi(line).cell_len

    board = leaderboard_frame(wide_tree)
    wide = render(board, "table", tty=tty, width=200)
    assert max(cell_len(line) for line in wide.splitlines()) <= 200
    for head in ("coco_pose", "mpii_pose", "crowdpose", "lip_parsing", "cihp_parsing", "pose", "parsing", "seeds"):
        assert head in wide, head
    assert "not shown at" not in wide
    assert "reid\nmean" not in wide and "reid mean" not in render(board, "markdown")  # one-card family

    narrow = render(board, "table", tty=tty, width=80)
    assert max(cell_len(line) for line in narrow.splitlines()) <= 80
    # per-card columns of multi-card families go first; their family means stay
    assert "coco_pose" not in narrow.split("values in %")[0] and "parsing" in narrow and "mean" in narrow
    note = next(line for line in narrow.split("not shown at 80 columns: ")[1:])
    assert "coco_pose" in note.replace("\n", " ")
    assert "vit_small" in narrow


def test_record_path_holds_tier_seed_and_a_file_checkpoints_sha():
    from hcbench.results.store import backbone_dirname, record_stem

    sha_a, sha_b = "1a2b3c4d" + "0" * 56, "9f8e7d6c" + "0" * 56
    assert record_path("r", "s", "vit_tiny", "coco_pose") == Path("r/s/vit_tiny/coco_pose.json")
    assert record_path("r", "s", "vit_tiny", "coco_pose", tier="smoke", seed=2) == Path("r/s/vit_tiny/coco_pose.smoke.s2.json")
    assert record_path("r", "s", "vit_tiny", "coco_pose", seed=1).name == "coco_pose.s1.json"
    assert record_path("r", "s", "vit_tiny", "coco_pose", tier="quick").name == "coco_pose.quick.json"
    a = record_path("r", "s", "file:a/model.safetensors", "c", checkpoint_sha256=sha_a)
    b = record_path("r", "s", "file:b/model.safetensors", "c", checkpoint_sha256=sha_b)
    assert (a.parent.name, b.parent.name) == ("file-model-1a2b3c4d", "file-model-9f8e7d6c")
    assert backbone_dirname("timm:vit_small_patch16_224") == "timm-vit_small_patch16_224"
    assert backbone_dirname("student:x", sha_a) == "student-x"  # a student's name is its identity
    assert len({record_stem("c", t, s) for t in ("full", "quick", "smoke") for s in (0, 1, 2)}) == 9
