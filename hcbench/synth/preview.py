"""Contact sheets of the synthetic data with its annotations drawn on (to look at, not to train on)."""

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
    for it in items:
        im = _zoom(it["image"])
        d = ImageDraw.Draw(im)
        _rect(d, it["bbox"], (255, 220, 0), width=1)
        kp = np.asarray(it["keypoints"], float)
        for a, b in COCO_SKELETON:
            if kp[a, 2] > 0 and kp[b, 2] > 0:
                d.line([tuple(kp[a, :2] * ZOOM), tuple(kp[b, :2] * ZOOM)], fill=(0, 200, 255), width=2)
        for x, y, v in kp:
            if v > 0:
                c = (0, 255, 0) if v == 2 else (255, 0, 0)
                d.ellipse([x * ZOOM - 3, y * ZOOM - 3, x * ZOOM + 3, y * ZOOM + 3], fill=c, outline=(0, 0, 0))
        tiles.append(im)
    return _save(_grid(tiles, 6), path)


def parsing_sheet(items: Sequence[dict], path: Path) -> Path:
    tiles = []
    for it in items:
        img, lab = it["image"], it["labels"]
        col = LIP_PALETTE[np.minimum(lab, len(LIP_PALETTE) - 1)]
        over = np.where((lab > 0)[..., None], (0.35 * img + 0.65 * col), img).astype(np.uint8)
        tiles.append(_zoom(np.concatenate([img, over, col], axis=1)))
    return _save(_grid(tiles, 3), path)


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
    return _save(_grid(tiles, 3), path)


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
    return _save(_grid(rows, 1, pad=0), path)


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
    return _save(_grid(tiles, 8), path)


def _save(im: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
