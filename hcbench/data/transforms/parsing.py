"""Human-parsing transforms on (H x W x 3 uint8 image, H x W uint8 label) pairs.

Labels are resized with nearest neighbour, padded with the ignore value (255) and, after a
horizontal flip, passed through ``ParsingMeta.flip_lut()`` so that left/right classes swap.
Randomness comes from an explicit ``numpy.random.Generator`` so a seed reproduces a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from hcbench.data.transforms.image import load_label, load_rgb, to_tensor
from hcbench.data.types import DataFormatError, ParsingMeta, ParsingSample

if TYPE_CHECKING:
    import torch


def load_pair(sample: ParsingSample, meta: ParsingMeta) -> tuple[np.ndarray, np.ndarray]:
    """Decode image and label, check they have the same size, map raw label values to train ids."""
    image = load_rgb(sample.image)
    label = load_label(sample.label)
    if label.shape != image.shape[:2]:
        raise DataFormatError(sample.label, f"label is {label.shape[1]}x{label.shape[0]} (WxH) but the image "
                              f"{sample.image.name} is {image.shape[1]}x{image.shape[0]}", record=sample.sample_id)
    if meta.label_map is not None:
        label = meta.remap_lut()[label]
    return image, label


def hflip(image: np.ndarray, label: np.ndarray, meta: ParsingMeta) -> tuple[np.ndarray, np.ndarray]:
    """Mirror both; left/right classes swap through the meta's flip LUT (ignore 255 stays)."""
    return image[:, ::-1].copy(), meta.flip_lut()[label[:, ::-1]]


def resize(image: np.ndarray, label: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size`` = (height, width): bilinear image, nearest-neighbour label."""
    h, w = size
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    lab = np.asarray(Image.fromarray(label).resize((w, h), Image.Resampling.NEAREST))
    return img, lab


def pad_to(image: np.ndarray, label: np.ndarray, size: tuple[int, int], ignore_index: int = 255,
           fill: Sequence[int] = (0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right up to at least ``size`` (h, w); padded label pixels are ``ignore_index``."""
    h, w = label.shape
    th, tw = max(h, size[0]), max(w, size[1])
    if (th, tw) == (h, w):
        return image, label
    img = np.empty((th, tw, 3), np.uint8)
    img[:] = np.asarray(fill, np.uint8)
    img[:h, :w] = image
    lab = np.full((th, tw), ignore_index, np.uint8)
    lab[:h, :w] = label
    return img, lab


def random_crop(image: np.ndarray, label: np.ndarray, size: tuple[int, int], rng: np.random.Generator,
                ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Pad (label with ``ignore_index``) if smaller than ``size`` = (h, w), then crop at a random offset."""
    image, label = pad_to(image, label, size, ignore_index)
    h, w = label.shape
    y = int(rng.integers(0, h - size[0] + 1))
    x = int(rng.integers(0, w - size[1] + 1))
    return image[y:y + size[0], x:x + size[1]], label[y:y + size[0], x:x + size[1]]


def resized_random_crop(image: np.ndarray, label: np.ndarray, resized_hw: tuple[int, int], size: tuple[int, int],
                        rng: np.random.Generator, meta: ParsingMeta, flip: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``resize(resized_hw)`` -> ``hflip`` (when ``flip``) -> ``random_crop(size)``, resizing only the
    window the crop keeps (PIL's ``resize(box=...)`` samples the same source points), so an image
    scaled up to 2x is never resized whole; the random draws are those of :func:`random_crop`.
    """
    th, tw = resized_hw
    ch, cw = size
    y = int(rng.integers(0, max(th, ch) - ch + 1))
    x = int(rng.integers(0, max(tw, cw) - cw + 1))
    y1, x1 = min(y + ch, th), min(x + cw, tw)  # the window in the resized (flipped) image
    ux0, ux1 = (tw - x1, tw - x) if flip else (x, x1)  # ... in the resized, unflipped image
    oh, ow = label.shape
    sy, sx = oh / th, ow / tw
    box = (ux0 * sx, y * sy, ux1 * sx, y1 * sy)
    win = (ux1 - ux0, y1 - y)
    img = np.asarray(Image.fromarray(image).resize(win, Image.Resampling.BILINEAR, box=box))
    lab = np.asarray(Image.fromarray(label).resize(win, Image.Resampling.NEAREST, box=box))
    if flip:
        img, lab = img[:, ::-1], meta.flip_lut()[lab[:, ::-1]]
    out_img = np.zeros((ch, cw, 3), np.uint8)
    out_lab = np.full((ch, cw), meta.ignore_index, np.uint8)
    out_img[:win[1], :win[0]] = img
    out_lab[:win[1], :win[0]] = lab
    return out_img, out_lab


def random_scale(image: np.ndarray, label: np.ndarray, scale_range: tuple[float, float],
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    s = float(rng.uniform(*scale_range))
    h, w = label.shape
    return resize(image, label, (max(1, round(h * s)), max(1, round(w * s))))


@dataclass(frozen=True)
class ParsingTransform:
    """Train: random scale -> random flip -> pad/crop to ``size``; eval: resize to ``size``.

    Returns (3 x H x W float tensor, H x W int64 label tensor). ``size`` is (height, width).
    """

    meta: ParsingMeta
    size: tuple[int, int] = (473, 473)
    train: bool = True
    scale_range: tuple[float, float] = (0.5, 2.0)
    flip_prob: float = 0.5
    mean: tuple[float, ...] | None = None  # None: [0, 1] output (the backbone normalises)
    std: tuple[float, ...] | None = None

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        import torch

        if self.train:
            rng = rng if rng is not None else np.random.default_rng()
            image, label = random_scale(image, label, self.scale_range, rng)
            if rng.random() < self.flip_prob:
                image, label = hflip(image, label, self.meta)
            image, label = random_crop(image, label, self.size, rng, self.meta.ignore_index)
        else:
            image, label = resize(image, label, self.size)
        return to_tensor(image, self.mean, self.std), torch.from_numpy(np.array(label, dtype=np.int64))
