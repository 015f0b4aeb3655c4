"""Contact sheets of the synthetic data with its annotations drawn on (to look at, not to train on).

Every sheet ends with a legend strip that says what each colour and marker means (the ``*_LEGEND``
constants below are the single place those colours are named).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hcbench.synth.body import COCO_SKELETON

# one colour per LIP class (0 = background stays transparent in overlays)
LIP_PALETTE = np.array([
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85), (0, 119, 221),
    (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
    (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0)], np.uint8)
ZOOM = 2

Legend = Sequence[tuple[tuple[int, int, int] | None, str]]  # (swatch colour or None for text only, label)
POSE_LEGEND: Legend = [((255, 220, 0), "person box"), ((0, 200, 255), "skeleton"),
                       ((0, 255, 0), "keypoint visible (v=2)"), ((255, 0, 0), "keypoint occluded (v=1)")]
WHOLEBODY_LEGEND: Legend = [((255, 160, 0), "feet"), ((255, 255, 255), "face"), ((255, 0, 255), "hands")]
DETECTION_LEGEND: Legend = [((0, 255, 0), "full body box"), ((0, 120, 255), "visible box"),
                            ((255, 230, 0), "head box"), ((255, 0, 0), "ignore region")]
PARSING_LEGEND: Legend = [(None, "each tile: image | overlay | label map"), *(
    (tuple(int(v) for v in LIP_PALETTE[i]), f"class {i}") for i in range(1, len(LIP_PALETTE)))]
REID_LEGEND: Legend = [(None, "one row per identity; caption: identity id, camera cN")]
ATTRIBUTE_LEGEND: Legend = [(None, "under each crop: its positive attributes")]


def with_legend(sheet: Image.Image, entries: Legend, bg=(24, 24, 24)) -> Image.Image:
    """``sheet`` with a legend strip below it: a colour swatch and a label per entry, wrapped to
    the sheet's width."""
    font_h, sw, gap = 11, 10, 14
    d0 = ImageDraw.Draw(sheet)
    widths = [(sw + 4 if colour is not None else 0) + int(d0.textlength(label)) for colour, label in entries]
    width = max(sheet.width, max(widths, default=0) + 8)
    lines, x = [[]], 4
    for entry, w in zip(entries, widths, strict=True):
        if x + w > width - 4 and lines[-1]:
            lines.append([])
            x = 4
        lines[-1].append((entry, x))
        x += w + gap
    out = Image.new("RGB", (width, sheet.height + 6 + (font_h + 4) * len(lines)), bg)
    out.paste(sheet, (0, 0))
    d = ImageDraw.Draw(out)
    for k, line in enumerate(lines):
        y = sheet.height + 4 + (font_h + 4) * k
        for (colour, label), x in line:
            if colour is not None:
                d.rectangle([x, y + 1, x + sw - 1, y + sw], fill=colour, outline=(200, 200, 200))
                x += sw + 4
            d.text((x, y), label, fill=(230, 230, 230))
    return out


def _grid(tiles: Sequence[Image.Image], cols: int, pad: int = 4, bg=(24, 24, 24)) -> Image.Image:
    cols = max(1, min(cols, len(tiles)))
    rows = (len(tiles) + cols - 1) // cols
    cw = max(t.width for t in tiles) + pad
    ch = max(t.height for t in tiles) + pad
    sheet = Image.new("RGB", (cols * cw + pad, rows * ch + pad), bg)
    for i, t in enumerate(tiles):
        sheet.paste(t, (pad + (i % cols) * cw, pad + (i // cols) * ch))
    return sheet


def _zoom(img: np.ndarray, z: int = ZOOM) -> Image.Image:
    im = Image.fromarray(img)
    return im.resize((im.width * z, im.height * z), Image.NEAREST)


def _rect(d: ImageDraw.ImageDraw, box, color, z: int = ZOOM, width: int = 2) -> None:
    x, y, w, h = (float(v) * z for v in box)
    d.rectangle([x, y, x + w, y + h], outline=color, width=width)


def pose_sheet(items: Sequence[dict], path: Path) -> Path:
    tiles = []
    wholebody = False
    for it in items:
        im = _zoom(it["image"])
        d = ImageDraw.Draw(im)
        _rect(d, it["bbox"], (255, 220, 0), width=1)
        kp = np.asarray(it["keypoints"], float)
        wholebody |= len(kp) > 17
        for a, b in COCO_SKELETON:
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                d.line([tuple(kp[a, :2] * ZOOM), tuple(kp[b, :2] * ZOOM)], fill=(0, 200, 255), width=2)
        for j, (x, y, v) in enumerate(kp):
            if v > 0:
                c = (0, 255, 0) if v == 2 else (255, 0, 0)
                r = 3 if j < 17 else 1  # whole-body points (feet, face, hands) as small dots
                if j >= 17 and v == 2:
                    c = (255, 160, 0) if j < 23 else (255, 255, 255) if j < 91 else (255, 0, 255)
                d.ellipse([x * ZOOM - r, y * ZOOM - r, x * ZOOM + r, y * ZOOM + r], fill=c,
                          outline=(0, 0, 0) if j < 17 else None)
        tiles.append(im)
    return _save(with_legend(_grid(tiles, 6), [*POSE_LEGEND, *(WHOLEBODY_LEGEND if wholebody else [])]), path)


def parsing_sheet(items: Sequence[dict], path: Path) -> Path:
    tiles = []
    for it in items:
        img, lab = it["image"], it["labels"]
        col = LIP_PALETTE[np.minimum(lab, len(LIP_PALETTE) - 1)]
        over = np.where((lab > 0)[..., None], (0.35 * img + 0.65 * col), img).astype(np.uint8)
        tiles.append(_zoom(np.concatenate([img, over, col], axis=1)))
    return _save(with_legend(_grid(tiles, 3), PARSING_LEGEND), path)


def detection_sheet(items: Sequence[dict], path: Path) -> Path:
    """Full boxes green, visible boxes blue, heads yellow, ignore regions red."""
    tiles = []
    for it in items:
        s = it["sample"]
        im = _zoom(it["image"])
        d = ImageDraw.Draw(im)
        for b in s.ignore:
            _rect(d, b, (255, 0, 0))
        for f, v, hb in zip(s.boxes, s.visible, s.heads, strict=True):
            _rect(d, v, (0, 120, 255), width=1)
            _rect(d, f, (0, 255, 0))
            _rect(d, hb, (255, 230, 0), width=1)
        tiles.append(im)
    return _save(with_legend(_grid(tiles, 3), DETECTION_LEGEND), path)


def reid_sheet(shown: dict[int, list[tuple[np.ndarray, int]]], path: Path) -> Path:
    """One row per identity, its images in camera order, captioned ``pid cN``."""
    rows = []
    for pid, ims in shown.items():
        tiles = []
        for img, cam in sorted(ims, key=lambda t: t[1]):
            im = _zoom(img)
            ImageDraw.Draw(im).text((3, 2), f"{pid} c{cam + 1}", fill=(255, 255, 255))
            tiles.append(im)
        rows.append(_grid(tiles, len(tiles)))
    return _save(with_legend(_grid(rows, 1, pad=0), REID_LEGEND), path)


def attribute_sheet(items: Sequence[dict], names: Sequence[str], path: Path) -> Path:
    """Each crop with the names of its positive attributes underneath."""
    tiles = []
    for it in items:
        im = _zoom(it["image"])
        on = [n for n, v in zip(names, it["labels"], strict=True) if v]
        cap = Image.new("RGB", (max(im.width, 110), im.height + 11 * len(on) + 4), (24, 24, 24))
        cap.paste(im, (0, 0))
        d = ImageDraw.Draw(cap)
        for k, n in enumerate(on):
            d.text((2, im.height + 2 + 11 * k), n, fill=(230, 230, 230))
        tiles.append(cap)
    return _save(with_legend(_grid(tiles, 8), ATTRIBUTE_LEGEND), path)


def _save(im: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
