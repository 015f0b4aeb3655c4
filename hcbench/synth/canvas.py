"""Rasterise figures: a piece-id map drawn in painter's order, then colours, labels, visibility.

Pieces are drawn with PIL into an int32 id map at ``ss`` x supersampling; everything else
(colour, stripes, outlines, the LIP label map, per-person visible masks, keypoint visibility)
is a lookup on that map, so labels and pixels can never disagree. The RGB image is the
supersampled colour image box-filtered down (anti-aliasing); labels take the centre sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from hcbench.synth.figure import BOX_HEAD_PARTS, KP_PARTS, NON_BODY, Figure, Piece

OUTLINE = 0.55  # brightness of piece borders: stylised cartoon edges make parts easy to read
DEPTH_MARGIN = 0.03  # a same-person piece this much nearer than a keypoint hides it


@dataclass
class PersonRender:
    """Per-person facts measured on the final raster (image pixel units)."""

    keypoints: np.ndarray  # (17, 3) x, y, v  (v: 2 visible, 1 occluded, 0 outside the image)
    full_box: np.ndarray  # [x, y, w, h] amodal, not clipped
    visible_box: np.ndarray  # [x, y, w, h] of visible pixels (zeros when none)
    head_box: np.ndarray  # [x, y, w, h] amodal head (hair, face, hat)
    visible_area: float  # visible body pixels
    full_area: float  # body pixels when drawn alone (for the visible fraction)
    part_pixels: dict[str, float]  # visible pixels per part name (accessories included)
    # the figure's 116 whole-body points after the body's 17 (feet, face, hands): x, y, v
    wholebody: np.ndarray | None = None


class Canvas:
    def __init__(self, height: int, width: int, ss: int = 2):
        self.h, self.w, self.ss = height, width, ss
        self.ids = Image.new("I", (width * ss, height * ss), 0)
        self._draw = ImageDraw.Draw(self.ids)
        self.pieces: list[Piece | None] = [None]
        self.figures: list[Figure] = []
        self._ids: np.ndarray | None = None

    def _paint(self, piece: Piece) -> None:
        self._ids = None
        pid = len(self.pieces)
        self.pieces.append(piece)
        for poly in piece.polys:
            self._draw.polygon((poly * self.ss).ravel().tolist(), fill=pid)

    def add_figure(self, fig: Figure) -> int:
        """Paint one person (its pieces in depth order); returns the person index."""
        idx = len(self.figures)
        self.figures.append(fig)
        for pc in sorted(fig.pieces, key=lambda p: p.depth):
            pc.person = idx
            self._paint(pc)
        return idx

    def add_shape(self, poly: np.ndarray, color, part: str = "occluder") -> None:
        """A non-person foreground object (label 0, hides whatever lies behind it)."""
        self._paint(Piece([np.asarray(poly, float)], 0, tuple(int(c) for c in color), part, 0.0))

    # ------------------------------------------------------------------ rasters
    def id_map(self) -> np.ndarray:
        if self._ids is None:
            self._ids = np.asarray(self.ids, dtype=np.int32)
        return self._ids

    def render(self, background: Image.Image, light: np.ndarray | None = None,
               noise: float = 0.0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 image and (H, W) uint8 LIP label map."""
        ids = self.id_map()
        ss = self.ss
        n = len(self.pieces)
        lut = np.zeros((2 * n, 3), np.uint8)  # rows n.. are the outline (darkened) colours
        cls = np.zeros(n, np.uint8)
        for i, pc in enumerate(self.pieces[1:], 1):
            lut[i], cls[i] = pc.color, pc.cls
        lut[n:] = (lut[:n].astype(np.uint16) * int(OUTLINE * 256) >> 8).astype(np.uint8)
        # outlines where the id changes between two pieces, or a piece meets the background
        fg = ids > 0
        edge = np.zeros(ids.shape, bool)
        edge[1:] |= ids[1:] != ids[:-1]
        edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
        edge &= fg
        rgb = np.take(lut, ids + edge * np.int32(n), axis=0)
        self._stripes(ids, rgb, edge)
        # composite at the output resolution: the box-filtered person colours (background pixels
        # are black in ``rgb``) plus the background weighted by the uncovered fraction
        alpha = np.asarray(Image.fromarray(fg.view(np.uint8) * np.uint8(255)).reduce(ss), np.float32) / 255
        person = np.asarray(Image.fromarray(rgb).reduce(ss), np.float32)
        bg = np.asarray(background.resize((self.w, self.h), Image.BILINEAR), np.float32)
        img = person + bg * (1 - alpha)[..., None]
        if light is not None:
            img *= light
        if noise > 0 and rng is not None:
            img += (rng.random(img.shape, dtype=np.float32) - 0.5) * (2 * noise)
        labels = cls[ids[ss // 2::ss, ss // 2::ss]]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), labels

    def _stripes(self, ids: np.ndarray, rgb: np.ndarray, edge: np.ndarray) -> None:
        ss = self.ss
        for i, pc in enumerate(self.pieces[1:], 1):
            if pc.stripe is None:
                continue
            pts = np.concatenate(pc.polys) * ss
            x0, y0 = np.floor(np.maximum(pts.min(0), 0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
            if x1 <= x0 or y1 <= y0:
                continue
            sub = ids[y0:y1, x0:x1] == i
            if not sub.any():
                continue
            o, ax, per, col = pc.stripe
            yy, xx = np.nonzero(sub)
            t = ((xx + x0 - o[0] * ss) * ax[0] + (yy + y0 - o[1] * ss) * ax[1]) / (per * ss)
            on = (np.floor(t).astype(int) % 2) == 1
            ys, xs = yy[on] + y0, xx[on] + x0
            dark = np.array(col, np.float32) * np.where(edge[ys, xs], OUTLINE, 1.0)[:, None]
            rgb[ys, xs] = dark.astype(np.uint8)

    # ------------------------------------------------------------------ measurements
    def measure(self, full_area: bool | set[int] = False, keypoints: bool = True,
                wholebody: bool = False) -> list[PersonRender]:
        """Per-person boxes, areas, part pixel counts and keypoint visibility; ``full_area`` (all,
        or a set of person indices) also rasterises each person alone, for the visible fraction
        of occluded people. With ``keypoints=False`` visibility is not computed (v stays 0)."""
        ids = self.id_map()
        ss, n = self.ss, len(self.pieces)
        owner = np.zeros(n, np.int32)  # 1 + person index for body pieces, 0 otherwise
        for i, pc in enumerate(self.pieces[1:], 1):
            if pc.person >= 0 and pc.part not in NON_BODY:
                owner[i] = pc.person + 1
        counts = np.bincount(ids.ravel(), minlength=n)
        area = np.bincount(owner, weights=counts, minlength=len(self.figures) + 1) / ss**2
        boxes = _label_boxes(np.take(owner, ids), len(self.figures) + 1)
        parts: list[dict[str, float]] = [{} for _ in self.figures]
        for i, pc in enumerate(self.pieces[1:], 1):
            if pc.person >= 0 and counts[i]:
                d = parts[pc.person]
                d[pc.part] = d.get(pc.part, 0.0) + counts[i] / ss**2
        out = []
        for k, fig in enumerate(self.figures):
            ext = fig.extent()
            head = fig.extent(frozenset(p.part for p in fig.pieces) - BOX_HEAD_PARTS)
            vbox = boxes[k + 1] / ss
            out.append(PersonRender(
                keypoints=self._keypoint_visibility(k, fig, ids) if keypoints else np.zeros((len(fig.keypoints), 3),
                                                                                             np.float32),
                full_box=np.array([ext[0], ext[1], ext[2] - ext[0], ext[3] - ext[1]], np.float32),
                visible_box=vbox,
                head_box=np.array([head[0], head[1], head[2] - head[0], head[3] - head[1]], np.float32),
                visible_area=float(area[k + 1]),
                full_area=self._solo_area(fig) if full_area is True or (full_area and k in full_area)
                else float("nan"),
                part_pixels=parts[k],
                wholebody=self._wholebody_visibility(k, fig, ids) if wholebody and "wb_xy" in fig.extra else None))
        return out

    def _wholebody_visibility(self, k: int, fig: Figure, ids: np.ndarray) -> np.ndarray:
        """Whole-body points: v=2 when a pixel next to the point shows the part it lies on (shoe,
        face, hand) of this person, v=1 when something hides it, v=0 outside the image or when
        the figure does not draw the part (a face turned away)."""
        ss = self.ss
        H, W = ids.shape
        xy, parts, labelled = fig.extra["wb_xy"], fig.extra["wb_parts"], fig.extra["wb_labelled"]
        out = np.zeros((len(xy), 3), np.float32)
        for j, (x, y) in enumerate(xy):
            if not labelled[j] or not (0 <= x < self.w and 0 <= y < self.h):
                continue
            cx, cy = int(x * ss), int(y * ss)
            win = ids[max(cy - 1, 0):min(cy + 2, H), max(cx - 1, 0):min(cx + 2, W)].ravel()
            seen = any(pid and self.pieces[pid].person == k and self.pieces[pid].part in parts[j] for pid in win)
            out[j] = (x, y, 2 if seen else 1)
        return out

    def _solo_area(self, fig: Figure) -> float:
        """Body pixels of this person drawn alone (at the output resolution: enough for a fraction)."""
        ext = fig.extent()
        x0, y0 = np.floor(ext[:2]).astype(int) - 1
        w, h = int(np.ceil(ext[2])) - x0 + 2, int(np.ceil(ext[3])) - y0 + 2
        im = Image.new("1", (max(w, 1), max(h, 1)), 0)
        d = ImageDraw.Draw(im)
        for pc in fig.pieces:
            if pc.part in NON_BODY:
                continue
            for poly in pc.polys:
                d.polygon((poly - [x0, y0]).ravel().tolist(), fill=1)
        return float(np.count_nonzero(np.asarray(im)))

    def _keypoint_visibility(self, k: int, fig: Figure, ids: np.ndarray) -> np.ndarray:
        """v=0 outside the image; v=2 when the pixel shows the keypoint's own limb (or a piece of
        the same person that is not nearer than the joint, e.g. the torso under a front-view
        shoulder); v=1 when hidden by another person, an object or a nearer part of the body."""
        ss = self.ss
        H, W = ids.shape
        out = np.zeros((len(fig.keypoints), 3), np.float32)
        for j, (x, y) in enumerate(fig.keypoints):
            if not (0 <= x < self.w and 0 <= y < self.h):
                continue
            cx, cy = int(x * ss), int(y * ss)
            win = ids[max(cy - 1, 0):min(cy + 2, H), max(cx - 1, 0):min(cx + 2, W)].ravel()
            visible = False
            for pid in win:
                pc = self.pieces[pid] if pid else None
                if pc is None or pc.person != k:
                    continue
                if pc.part in KP_PARTS[j] or pc.depth <= fig.kp_depth[j] + DEPTH_MARGIN:
                    visible = True
                    break
            out[j] = (x, y, 2 if visible else 1)
        return out


def _label_boxes(labels: np.ndarray, n: int) -> np.ndarray:
    """(n, 4) [x, y, w, h] pixel extent of each label value 0..n-1 (zeros when absent), in one pass:
    a (row, label) and a (column, label) presence table from two bincounts."""
    h, w = labels.shape
    rows = np.bincount((np.arange(h)[:, None] * n + labels).ravel(), minlength=h * n).reshape(h, n) > 0
    cols = np.bincount((np.arange(w)[None, :] * n + labels).ravel(), minlength=w * n).reshape(w, n) > 0
    out = np.zeros((n, 4), np.float32)
    for k in range(n):
        r, c = np.flatnonzero(rows[:, k]), np.flatnonzero(cols[:, k])
        if len(r):
            out[k] = (c[0], r[0], c[-1] + 1 - c[0], r[-1] + 1 - r[0])
    return out
