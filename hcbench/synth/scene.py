"""Scenes: a single-person crop (pose, parsing, ReID, attributes) and shared seeding helpers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from hcbench.synth.background import Style, background, light_field, occluder, sample_style
from hcbench.synth.body import Appearance, Pose
from hcbench.synth.canvas import Canvas, PersonRender
from hcbench.synth.figure import Figure, build_figure

SS = 2  # supersampling factor of every raster


def split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """One independent, reproducible stream per (seed, dataset, split)."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(dataset.encode()), zlib.crc32(split.encode())])
    return np.random.default_rng(ss)


@dataclass
class Shot:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8 LIP class ids
    people: list[PersonRender]
    figures: list[Figure]
    extra: dict = field(default_factory=dict)


def person_crop(rng: np.random.Generator, h: int, w: int, app: Appearance, pose: Pose, *,
                style: Style | None = None, height_frac: tuple[float, float] = (0.72, 0.92),
                x_jitter: float = 0.08, truncate_p: float = 0.0, occlude_p: float = 0.0,
                light_jitter: float = 0.08, noise: tuple[float, float] = (1.0, 6.0),
                quality: float = 1.0, fit_width: bool = True, measure: bool = True, wholebody: bool = False) -> Shot:
    """One person roughly centred in an ``h`` x ``w`` image.

    ``truncate_p``: chance that the body is pushed partly out of the frame (keypoints outside
    get v=0); ``occlude_p``: chance of a foreground object in front (v=1 where it hides a
    joint); ``quality`` < 1 renders smaller and upsamples (a low-resolution camera);
    ``measure=False`` skips the per-person measurements (``people`` is then empty);
    ``wholebody=True`` also measures the figure's feet, face and hand points (``PersonRender.wholebody``).
    """
    rh, rw = (max(int(round(h * quality)), 16), max(int(round(w * quality)), 8)) if quality < 1 else (h, w)
    fig = build_figure(app, pose)
    ext = fig.extent()
    aspect = (ext[2] - ext[0]) / max(ext[3] - ext[1], 1e-6)
    frac = rng.uniform(*height_frac)
    ph = frac * rh
    if fit_width and ph * aspect > 0.95 * rw:  # wide poses (arms out, crouch) must still fit the width
        ph = 0.95 * rw / aspect
    cx = rw / 2 + rng.uniform(-x_jitter, x_jitter) * rw
    top = (rh - ph) / 2 + rng.uniform(-0.3, 0.3) * (rh - ph)
    truncated = bool(rng.random() < truncate_p)
    if truncated:
        r = rng.random()
        if r < 0.5:
            top += rng.uniform(0.15, 0.35) * ph  # feet out of the bottom
        else:
            cx += (1 if r < 0.75 else -1) * rng.uniform(0.3, 0.5) * rw
    fig = fig.fit([cx, top, cx, top + ph])
    canvas = Canvas(rh, rw, SS)
    canvas.add_figure(fig)
    occluded = bool(rng.random() < occlude_p)
    if occluded:
        e = fig.extent()
        poly, col = occluder(rng, e, rh, rw)
        canvas.add_shape(poly, col)
    style = style or sample_style(rng)
    img, labels = canvas.render(background(rng, rh, rw, style), light_field(rng, rh, rw, style, light_jitter),
                                float(rng.uniform(*noise)), rng)
    people = canvas.measure(wholebody=wholebody) if measure else []
    if quality < 1:
        # a low-resolution camera: upsample the small render; annotations are not used by callers
        img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
        labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.NEAREST))
    return Shot(img, labels, people, [fig], {"truncated": truncated, "occluded": occluded})


def empty_crop(rng: np.random.Generator, h: int, w: int, style: Style | None = None) -> np.ndarray:
    """Background only (a ReID "junk" detection)."""
    style = style or sample_style(rng)
    canvas = Canvas(h, w, SS)
    img, _ = canvas.render(background(rng, h, w, style), light_field(rng, h, w, style), 3.0, rng)
    return img


def clip_box(box: np.ndarray, w: int, h: int) -> list[float]:
    """[x, y, w, h] clipped to the image."""
    x0, y0 = max(float(box[0]), 0.0), max(float(box[1]), 0.0)
    x1, y1 = min(float(box[0] + box[2]), float(w)), min(float(box[1] + box[3]), float(h))
    return [x0, y0, max(x1 - x0, 0.0), max(y1 - y0, 0.0)]
