"""ReID transforms as in the ReID strong baseline (Luo et al., 2019), built from torchvision v2.

Train: resize to 256 x 128 -> random horizontal flip (0.5) -> pad 10 -> random crop 256 x 128 ->
to float in [0, 1] -> random erasing (p 0.5, area 2%..40%, aspect 0.3..3.33, filled with the
ImageNet mean pixel). Eval: resize, to float. The backbone normalises its input itself.
torchvision draws its randomness from torch's global generator (seed with ``torch.manual_seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcbench.data.transforms.image import IMAGENET_MEAN


def random_erasing(probability: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                   mean: tuple[float, ...] = IMAGENET_MEAN) -> Callable[[Any], Any]:
    """Erase one random rectangle (area fraction in [sl, sh], aspect in [r1, 1/r1]) with ``mean``."""
    from torchvision.transforms import v2

    return v2.RandomErasing(p=probability, scale=(sl, sh), ratio=(r1, 1.0 / r1), value=list(mean))


def reid_transform(size: tuple[int, int] = (256, 128), train: bool = True, flip_prob: float = 0.5,
                   pad: int = 10, erase_prob: float = 0.5) -> Callable[[Any], Any]:
    """H x W x 3 uint8 array (or PIL image) -> 3 x H x W float tensor in [0, 1]; ``size`` is (height, width)."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.Resize(list(size), antialias=True)]
    if train:
        steps += [v2.RandomHorizontalFlip(flip_prob), v2.Pad(pad), v2.RandomCrop(list(size))]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train and erase_prob > 0:
        steps.append(random_erasing(erase_prob))
    return v2.Compose(steps)


class ReIDCrop:
    """The train/eval transform above in a few uint8 tensor ops, drawing from a numpy generator.

    Same steps and distributions as :func:`reid_transform` (and the same resize kernel:
    torchvision's antialiased bilinear on uint8): resize -> flip with ``flip`` -> zero-pad ``pad``
    and crop back at a uniform offset -> float in [0, 1] -> random erasing with ``erase``
    (torchvision's ``RandomErasing`` rule: up to 10 draws of area in ``erase_area`` x the image and
    log-uniform aspect in [r, 1/r], the first that fits is filled with ``mean``). The flip and the
    pad/crop are one slice copy, and only one float conversion is made; torchvision's seven-op
    pipeline on float32 took ~4x longer per item (issue 18). Randomness comes from ``rng`` (the
    engine's per-sample generator), else from torch's global RNG.
    """

    def __init__(self, size: tuple[int, int] = (256, 128), train: bool = True, flip: float = 0.5, pad: int = 10,
                 erase: float = 0.5, erase_area: tuple[float, float] = (0.02, 0.4), erase_ratio: float = 0.3,
                 mean: tuple[float, ...] = IMAGENET_MEAN):
        self.size = (int(size[0]), int(size[1]))
        self.train, self.flip, self.pad, self.erase = train, float(flip), int(pad), float(erase)
        self.erase_area, self.erase_ratio, self.mean = erase_area, float(erase_ratio), tuple(mean)

    def __call__(self, image: Any, rng: Any = None) -> Any:
        import numpy as np
        import torch
        from torchvision.transforms.v2 import functional as TF

        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 image, got shape {arr.shape}")
        if not arr.flags.writeable:  # PIL-backed arrays are read-only; torch wants writable memory
            arr = arr.copy()
        h, w = self.size
        # HWC memory seen as CHW (channels-last): torchvision's fast uint8 antialias path
        x = TF.resize(torch.from_numpy(arr).permute(2, 0, 1), [h, w], antialias=True)
        if self.train:
            if rng is None:
                from hcbench.data.rng import rng_from_torch

                rng = rng_from_torch()
            flipped = rng.random() < self.flip
            dy, dx = (int(v) for v in rng.integers(0, 2 * self.pad + 1, size=2)) if self.pad > 0 else (self.pad,) * 2
            if flipped or self.pad > 0:
                src = x.flip(-1) if flipped else x
                out = torch.zeros_like(src)
                sy, sx = dy - self.pad, dx - self.pad  # crop pixel (i, j) shows resized (i + sy, j + sx)
                out[:, max(0, -sy):h - max(0, sy), max(0, -sx):w - max(0, sx)] = \
                    src[:, max(0, sy):h + min(0, sy), max(0, sx):w + min(0, sx)]
                x = out
        t = TF.to_dtype(x.contiguous(), torch.float32, scale=True)
        if self.train and self.erase > 0 and rng.random() < self.erase:
            box = self._erase_box(h, w, rng)
            if box is not None:
                i, j, eh, ew = box
                t[:, i:i + eh, j:j + ew] = torch.tensor(self.mean, dtype=t.dtype)[:, None, None]
        return t

    def _erase_box(self, h: int, w: int, rng: Any) -> tuple[int, int, int, int] | None:
        import math

        lo, hi = math.log(self.erase_ratio), math.log(1.0 / self.erase_ratio)
        for _ in range(10):
            area = h * w * rng.uniform(*self.erase_area)
            aspect = math.exp(rng.uniform(lo, hi))
            eh, ew = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if eh < h and ew < w:
                return int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1)), eh, ew
        return None
