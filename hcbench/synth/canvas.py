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

from hcbench.synth.figure import KP_PARTS, NON_BODY, Figure, Piece

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


class Canvas:
    def __init__(self, height: int, width: int, ss: int = 2):
        self.h, self.w, self.ss = height, width, ss
        self.ids = Image.new("I", (width * ss, height * ss), 0)
        self._draw = ImageDraw.Draw(self.ids)
        self.pieces: list[Piece | None] = [None]
        self.figures: list[Figure] = []

    def _paint(self, piece: Piece) -> None:
        pid = len(self.pieces)
        self.pieces.append(piece)
        for poly in piece.polys:
            self._draw.polygon([tuple(p) for p in (poly * self.ss).tolist()], fill=pid)

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
        return np.asarray(self.ids, dtype=np.int32)

    def render(self, background: np.ndarray, light: np.ndarray | None = None,
               noise: float = 0.0, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 image and (H, W) uint8 LIP label map."""
        ids = self.id_map()
        ss = self.ss
        n = len(self.pieces)
        lut = np.zeros((n, 3), np.float32)
        cls = np.zeros(n, np.uint8)
        for i, pc in enumerate(self.pieces[1:], 1):
            lut[i], cls[i] = pc.color, pc.cls
        bg = np.repeat(np.repeat(background.astype(np.float32), ss, 0), ss, 1)
        rgb = np.where((ids > 0)[..., None], lut[ids], bg)
        self._stripes(ids, rgb)
        # outlines where the id changes between two pieces, or a piece meets the background
        edge = np.zeros(ids.shape, bool)
        dv, dh = ids[1:] != ids[:-1], ids[:, 1:] != ids[:, :-1]
        edge[1:] |= dv
        edge[:, 1:] |= dh
        edge &= ids > 0
        rgb[edge] *= OUTLINE
        img = rgb.reshape(self.h, ss, self.w, ss, 3).mean((1, 3))
        if light is not None:
            img *= light
        if noise > 0 and rng is not None:
            img += rng.normal(0, noise, img.shape).astype(np.float32)
        labels = cls[ids[ss // 2::ss, ss // 2::ss]]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8), labels

    def _stripes(self, ids: np.ndarray, rgb: np.ndarray) -> None:
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
            rgb[yy[on] + y0, xx[on] + x0] = col

    # ------------------------------------------------------------------ measurements
    def measure(self) -> list[PersonRender]:
        ids = self.id_map()
        ss = self.ss
        n = len(self.pieces)
        person = np.full(n, -1, np.int32)
        body = np.zeros(n, bool)
        for i, pc in enumerate(self.pieces[1:], 1):
            person[i] = pc.person
            body[i] = pc.person >= 0 and pc.part not in NON_BODY
        pmap = person[ids]
        bmap = body[ids]
        out = []
        for k, fig in enumerate(self.figures):
            vis = (pmap == k) & bmap
            out.append(self._measure_one(k, fig, ids, vis))
        return out

    def _measure_one(self, k: int, fig: Figure, ids: np.ndarray, vis: np.ndarray) -> PersonRender:
        ss = self.ss
        ext = fig.extent()
        full_box = np.array([ext[0], ext[1], ext[2] - ext[0], ext[3] - ext[1]], np.float32)
        head = fig.extent(frozenset(p.part for p in fig.pieces) - {"head", "face", "eye", "l_ear", "r_ear", "hat"})
        head_box = np.array([head[0], head[1], head[2] - head[0], head[3] - head[1]], np.float32)
        ys, xs = np.nonzero(vis)
        if len(xs):
            vbox = np.array([xs.min() / ss, ys.min() / ss, (xs.max() + 1 - xs.min()) / ss,
                             (ys.max() + 1 - ys.min()) / ss], np.float32)
        else:
            vbox = np.zeros(4, np.float32)
        # full area: rasterise this person alone (cheap: small bbox)
        full_area = self._solo_area(fig)
        parts: dict[str, float] = {}
        sel = ids[(ids > 0)]
        counts = np.bincount(sel, minlength=len(self.pieces)) if sel.size else np.zeros(len(self.pieces), int)
        for i, pc in enumerate(self.pieces[1:], 1):
            if pc.person == k and counts[i]:
                parts[pc.part] = parts.get(pc.part, 0.0) + counts[i] / ss**2
        kps = self._keypoint_visibility(k, fig, ids)
        return PersonRender(kps, full_box, vbox, head_box, float(vis.sum()) / ss**2, full_area, parts)

    def _solo_area(self, fig: Figure) -> float:
        ext = fig.extent() * self.ss
        x0, y0 = np.floor(ext[:2]).astype(int) - 1
        w, h = int(np.ceil(ext[2])) - x0 + 2, int(np.ceil(ext[3])) - y0 + 2
        im = Image.new("1", (max(w, 1), max(h, 1)), 0)
        d = ImageDraw.Draw(im)
        for pc in fig.pieces:
            if pc.part in NON_BODY:
                continue
            for poly in pc.polys:
                d.polygon([tuple(p) for p in (poly * self.ss - [x0, y0]).tolist()], fill=1)
        return float(np.asarray(im).sum()) / self.ss**2

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
