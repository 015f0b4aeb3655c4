"""Detection transforms: aspect-preserving resize with a max size, horizontal flip, on all box sets.

Boxes are ``[x, y, w, h]`` in pixels. A target is a dict of N x 4 float32 arrays (``boxes``,
``visible``, ``ignore`` and optionally ``heads``); every box set is moved the same way, so
ignore regions stay aligned with the image after augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from hcbench.data.transforms.image import to_tensor
from hcbench.data.types import DetectionSample

if TYPE_CHECKING:
    import torch

BOX_KEYS = ("boxes", "visible", "ignore", "heads")
Target = dict[str, np.ndarray]


def target_of(sample: DetectionSample) -> Target:
    """The box sets of a sample as float32 copies (``heads`` only when the format has them)."""
    t = {"boxes": sample.boxes, "visible": sample.visible, "ignore": sample.ignore}
    if sample.heads is not None:
        t["heads"] = sample.heads
    out: Target = {k: np.asarray(v, np.float32).reshape(-1, 4).copy() for k, v in t.items()}
    if sample.labels is not None:
        out["labels"] = np.asarray(sample.labels).copy()
    return out


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror ``[x, y, w, h]`` boxes in an image ``width`` pixels wide: x -> width - x - w."""
    out = np.array(boxes, np.float32, copy=True).reshape(-1, 4)
    out[:, 0] = width - out[:, 0] - out[:, 2]
    return out


def scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    out = np.array(boxes, np.float32, copy=True).reshape(-1, 4)
    out[:, [0, 2]] *= sx
    out[:, [1, 3]] *= sy
    return out


def hflip(image: np.ndarray, target: Target) -> tuple[np.ndarray, Target]:
    w = image.shape[1]
    out = {k: (flip_boxes(v, w) if k in BOX_KEYS else v) for k, v in target.items()}
    return image[:, ::-1].copy(), out


def resized_shape(height: int, width: int, short: int, max_size: int) -> tuple[int, int]:
    """(h, w) with the short side ``short`` unless that makes the long side exceed ``max_size``."""
    s = short / min(height, width)
    if max(height, width) * s > max_size:
        s = max_size / max(height, width)
    return max(1, round(height * s)), max(1, round(width * s))


def resize(image: np.ndarray, target: Target, short: int = 800, max_size: int = 1333
           ) -> tuple[np.ndarray, Target, tuple[float, float]]:
    """Aspect-preserving resize; boxes scale by the exact per-axis factors of the rounded size.

    Returns (image, target, (sx, sy)) so predictions can be mapped back by dividing.
    """
    h, w = image.shape[:2]
    nh, nw = resized_shape(h, w, short, max_size)
    img = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
    sx, sy = nw / w, nh / h
    out = {k: (scale_boxes(v, sx, sy) if k in BOX_KEYS else v) for k, v in target.items()}
    return img, out, (sx, sy)


@dataclass(frozen=True)
class DetectionTransform:
    """Resize (short side, max size) and, when training, a random horizontal flip.

    Returns (3 x H x W float tensor, target with boxes in resized pixels, (sx, sy)).
    """

    short: int = 800
    max_size: int = 1333
    train: bool = True
    flip_prob: float = 0.5
    mean: tuple[float, ...] | None = None  # None: [0, 1] output (the backbone normalises)
    std: tuple[float, ...] | None = None

    def __call__(self, image: np.ndarray, target: Target, rng: np.random.Generator | None = None
                 ) -> tuple[torch.Tensor, Target, tuple[float, float]]:
        image, target, scale = resize(image, target, self.short, self.max_size)
        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            if rng.random() < self.flip_prob:
                image, target = hflip(image, target)
        return to_tensor(image, self.mean, self.std), target, scale
