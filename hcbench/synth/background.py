"""Backgrounds (gradients, floor/wall, blotchy noise, random shapes), lighting and occluders.

A :class:`Style` is what a ReID camera keeps fixed (palette, layout kind, light); every image
still draws its own shapes and noise from the style. Backgrounds are muted (partly
desaturated) so that the clothing colours, which carry the labels, stay the salient signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

KINDS = ("gradient", "room", "street", "noise")


@dataclass
class Style:
    kind: str
    colors: np.ndarray  # (4, 3) palette
    horizon: float  # fraction of the height
    brightness: float
    cast: np.ndarray  # (3,) per-channel gain
    light_dir: float  # radians
    light_strength: float
    desaturate: float
    n_shapes: int


def sample_style(rng: np.random.Generator, kind: str | None = None) -> Style:
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    return Style(
        kind=kind, colors=rng.uniform(30, 225, (4, 3)), horizon=float(rng.uniform(0.35, 0.75)),
        brightness=float(rng.uniform(0.75, 1.2)), cast=rng.uniform(0.9, 1.1, 3),
        light_dir=float(rng.uniform(0, 2 * np.pi)), light_strength=float(rng.uniform(0.0, 0.35)),
        desaturate=float(rng.uniform(0.3, 0.65)), n_shapes=int(rng.integers(2, 9)),
    )


def _lowres_noise(rng: np.random.Generator, h: int, w: int, cell: int, amp: float) -> np.ndarray:
    """Smooth colour blotches in [-amp, amp]: random cells upsampled bicubically (one PIL call)."""
    small = rng.integers(0, 256, (max(h // cell, 2), max(w // cell, 2), 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    return (big - 127.5) * (amp / 127.5)


def background(rng: np.random.Generator, h: int, w: int, style: Style, scale: float = 0.5) -> Image.Image:
    """An RGB image of ``scale`` x (h, w); the canvas upsamples it bilinearly, which also softens it
    a little (a shallow depth of field that keeps people the sharpest thing in the picture)."""
    h, w = max(int(round(h * scale)), 2), max(int(round(w * scale)), 2)
    c = style.colors * rng.uniform(0.9, 1.1, (4, 3))
    c = c * (1 - style.desaturate) + c.mean(1, keepdims=True) * style.desaturate  # muted palette
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    if style.kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a), 0, 1)
        img = c[0] * (1 - t) + c[1] * t
    else:
        hz = style.horizon + rng.uniform(-0.05, 0.05)
        wall = c[0] * (1 - yy / max(hz, 1e-3)) * 0.3 + c[0] * 0.7
        floor = c[1] * (0.75 + 0.25 * (yy - hz) / max(1 - hz, 1e-3))
        img = np.where(yy < hz, wall, floor) + 0 * xx
    img = np.ascontiguousarray(np.broadcast_to(img, (h, w, 3)), dtype=np.float32)
    if style.kind == "noise":
        n = _lowres_noise(rng, h, w, int(rng.integers(3, 10)), 30)
        img += n * (1 - style.desaturate) + n.mean(2, keepdims=True) * style.desaturate
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(style.n_shapes):
        col = tuple(int(v) for v in np.clip(c[int(rng.integers(2, 4))] * rng.uniform(0.6, 1.3), 0, 255))
        x0, y0 = rng.uniform(-0.2, 1.0) * w, rng.uniform(-0.2, 1.0) * h
        x1, y1 = x0 + rng.uniform(0.08, 0.5) * w, y0 + rng.uniform(0.05, 0.5) * h
        r = rng.random()
        if style.kind == "street" or r < 0.45:  # buildings, windows, doors
            d.rectangle([x0, y0, x1, y1], fill=col)
        elif r < 0.75:
            d.ellipse([x0, y0, x1, y1], fill=col)
        else:
            d.line([x0, y0, x1, y1], fill=col, width=int(rng.integers(1, 3)))
    return pil


def light_field(rng: np.random.Generator, h: int, w: int, style: Style, jitter: float = 0.08) -> np.ndarray:
    """Multiplicative (h, w, 3) illumination: brightness x colour cast x a directional ramp."""
    b = style.brightness * rng.uniform(1 - jitter, 1 + jitter)
    yy = np.linspace(-0.5, 0.5, h, dtype=np.float32)[:, None]
    xx = np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :]
    ramp = 1 + style.light_strength * (xx * np.cos(style.light_dir) + yy * np.sin(style.light_dir))
    return (b * ramp)[..., None] * style.cast.astype(np.float32)[None, None, :]


def occluder(rng: np.random.Generator, box: np.ndarray, h: int, w: int) -> tuple[np.ndarray, tuple]:
    """A foreground object (post, box, bush) overlapping the person box [x0, y0, x1, y1]."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    col = tuple(int(v) for v in rng.uniform(40, 200, 3))
    kind = rng.random()
    if kind < 0.4:  # a vertical post
        x = rng.uniform(box[0], box[2])
        pw = rng.uniform(0.08, 0.2) * bw
        poly = np.array([[x - pw / 2, -1], [x + pw / 2, -1], [x + pw / 2, h + 1], [x - pw / 2, h + 1]])
    elif kind < 0.75:  # a box/table covering the legs
        y = rng.uniform(box[1] + 0.55 * bh, box[1] + 0.85 * bh)
        x0 = rng.uniform(box[0] - 0.5 * bw, box[0] + 0.3 * bw)
        poly = np.array([[x0, y], [x0 + rng.uniform(0.5, 1.2) * bw, y], [x0 + rng.uniform(0.5, 1.2) * bw, h + 1],
                         [x0, h + 1]])
    else:  # a bush (ellipse) at a side
        cx = rng.choice([box[0], box[2]]) + rng.uniform(-0.1, 0.1) * bw
        cy = rng.uniform(box[1] + 0.4 * bh, box[3])
        rx, ry = rng.uniform(0.2, 0.4) * bw, rng.uniform(0.12, 0.25) * bh
        t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        poly = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)
    return poly, col
