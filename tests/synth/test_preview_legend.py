"""Preview contact sheets say what their colours mean: a legend strip under every sheet."""

from pathlib import Path

import numpy as np
from PIL import Image

from hcbench.synth import preview as pv


def _colours(im: Image.Image) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in px) for px in np.asarray(im.convert("RGB")).reshape(-1, 3)}


def test_pose_sheet_has_a_legend_with_every_colour_it_draws(tmp_path: Path):
    img = np.full((64, 48, 3), 90, np.uint8)
    kp = np.zeros((17, 3))
    kp[:, :2] = 20
    kp[:, 2] = 2
    path = pv.pose_sheet([{"image": img, "bbox": [4, 4, 30, 50], "keypoints": kp}], tmp_path / "p.png")
    sheet = Image.open(path)
    grid_h = 64 * pv.ZOOM + 8  # one tile plus the grid's padding
    assert sheet.height > grid_h
    strip = sheet.crop((0, grid_h, sheet.width, sheet.height))
    for colour, _ in pv.POSE_LEGEND:
        assert colour in _colours(strip), colour  # each swatch drawn in the strip
    assert not (set(c for c, _ in pv.WHOLEBODY_LEGEND) & _colours(strip))  # no whole-body entries for 17 points


def test_with_legend_wraps_to_the_sheet_width():
    sheet = Image.new("RGB", (300, 40), (0, 0, 0))
    out = pv.with_legend(sheet, pv.PARSING_LEGEND)
    assert out.width == 300 and out.height > 40 + 3 * 15  # 20 entries cannot fit one 300-pixel line
    assert np.array_equal(np.asarray(out)[:40], np.asarray(sheet))  # the sheet itself is untouched
    strip = _colours(out.crop((0, 40, 300, out.height)))
    assert all(c in strip for c, _ in pv.PARSING_LEGEND if c is not None)
