"""The radar chart with one backbone draws absolute values (a min-max over one value is degenerate)."""

from pathlib import Path

import numpy as np
import pytest
from test_store_leaderboard import make_record  # same folder: pytest puts it on sys.path

from hcbench.results.leaderboard import leaderboard_frame
from hcbench.results.report import radar_figure
from hcbench.results.store import write_record


def test_one_backbone_radar_radii_are_the_values(tmp_path: Path):
    root = tmp_path / "results"
    cells = {"coco_pose": ("pose", "AP", 0.70), "lip_parsing": ("parsing", "mIoU", 0.45),
             "citypersons_det": ("detection", "MR-2", 0.20), "market_reid": ("reid", "mAP", 0.81)}
    for card, (fam, metric, v) in cells.items():
        write_record(root / "s" / "vit_tiny" / f"{card}.json", make_record("vit_tiny", card, fam, {metric: v}, metric))
    board = leaderboard_frame(root)
    fig = radar_figure(board)
    ax = fig.axes[0]
    line = next(ln for ln in ax.get_lines() if ln.get_gid() == "bb-0")
    radii = np.asarray(line.get_ydata(), float)
    want = [0.70 if c == "coco_pose" else 0.45 if c == "lip_parsing" else 0.80 if c == "citypersons_det" else 0.81
            for c in board.cards]  # MR-2 (lower is better) is drawn as 1 - x, outward still better
    assert radii[:-1] == pytest.approx(want) and radii[-1] == pytest.approx(want[0])  # closed polygon
    assert [t.get_text() for t in ax.get_yticklabels()] == ["25", "50", "75", "100"]  # an absolute scale


@pytest.mark.parametrize("value, text", [(0.0716, "0.0716"), (1.2203, "1.22"), (17.56, "17.6"), (4.6, "4.60"),
                                         (None, "—"), (0.0, "0")])
def test_flops_keep_three_significant_digits(value, text):
    from hcbench.listing import _fmt
    from hcbench.results.fmt import significant

    assert significant(value) == text and _fmt("gflops", value) == text
