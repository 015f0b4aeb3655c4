"""ReID transforms as in the ReID strong baseline (Luo et al., 2019), built from torchvision v2.

Train: resize to 256 x 128 -> random horizontal flip (0.5) -> pad 10 -> random crop 256 x 128 ->
to float, normalise -> random erasing (p 0.5, area 2%..40%, aspect 0.3..3.33, filled with the
pixel mean, i.e. after normalisation as the baseline does). Eval: resize, to float, normalise.
torchvision draws its randomness from torch's global generator (seed with ``torch.manual_seed``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hcbench.data.transforms.image import IMAGENET_MEAN, IMAGENET_STD


def random_erasing(probability: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                   mean: tuple[float, ...] = IMAGENET_MEAN) -> Callable[[Any], Any]:
    """Erase one random rectangle (area fraction in [sl, sh], aspect in [r1, 1/r1]) with ``mean``."""
    from torchvision.transforms import v2

    return v2.RandomErasing(p=probability, scale=(sl, sh), ratio=(r1, 1.0 / r1), value=list(mean))


def reid_transform(size: tuple[int, int] = (256, 128), train: bool = True, flip_prob: float = 0.5,
                   pad: int = 10, erase_prob: float = 0.5, mean: tuple[float, ...] = IMAGENET_MEAN,
                   std: tuple[float, ...] = IMAGENET_STD) -> Callable[[Any], Any]:
    """H x W x 3 uint8 array (or PIL image) -> 3 x H x W float tensor; ``size`` is (height, width)."""
    import torch
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.Resize(list(size), antialias=True)]
    if train:
        steps += [v2.RandomHorizontalFlip(flip_prob), v2.Pad(pad), v2.RandomCrop(list(size))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if train and erase_prob > 0:
        steps.append(random_erasing(erase_prob, mean=mean))
    return v2.Compose(steps)
