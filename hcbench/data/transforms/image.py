"""Image I/O shared by every family: decode fully with clear errors, write, normalise to CHW tensors.

Decoding is done by Pillow with ``.load()`` so that a truncated file fails here, naming the
file, instead of producing a half-grey image later. torch is imported only by ``to_tensor``
so ``hcbench data check`` never pays for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from hcbench.data.types import DataFormatError

# Input normalisation lives in the backbone (hcbench.backbones.features.Backbone), statistics
# defined once in hcbench.normalization; transforms produce [0, 1] floats. IMAGENET_MEAN stays
# importable here as the fill colour of random erasing.
from hcbench.normalization import IMAGENET_MEAN  # noqa: E402,F401

if TYPE_CHECKING:
    import torch


def open_image(path: str | Path) -> Image.Image:
    """Open and fully decode an image; missing -> FileNotFoundError, undecodable -> DataFormatError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file missing")
    try:
        im = Image.open(path)
        im.load()  # forces the whole decode: truncated JPEG/PNG raise OSError here
    except UnidentifiedImageError:
        raise DataFormatError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataFormatError(path, f"cannot decode image: {e}") from None
    return im


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after a full decode (the check used by ``hcbench data check``)."""
    return open_image(path).size


def load_rgb(path: str | Path) -> np.ndarray:
    """H x W x 3 uint8 RGB (grey, palette, RGBA and CMYK inputs are converted)."""
    im = open_image(path)
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)


def load_label(path: str | Path) -> np.ndarray:
    """H x W uint8 class-id map from a single-channel (L, P or I) PNG; colour PNGs are refused."""
    im = open_image(path)
    if im.mode in ("L", "P"):
        return np.asarray(im, dtype=np.uint8)
    if im.mode in ("I", "I;16", "I;16B", "I;16L"):
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 255:
            raise DataFormatError(path, f"label values span [{arr.min()}, {arr.max()}]; expected 0..255")
        return arr.astype(np.uint8)
    raise DataFormatError(path, f"label image has mode {im.mode!r}; expected single-channel class ids (L or P)")


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write an H x W x 3 uint8 array; the suffix picks the codec (.jpg/.png)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path}: expected an H x W x 3 uint8 image, got {arr.dtype} {arr.shape}")
    im = Image.frombytes("RGB", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    if path.suffix.lower() in (".jpg", ".jpeg"):
        im.save(path, quality=quality)
    else:
        im.save(path)
    return path


def write_label(path: str | Path, label: np.ndarray, palette: bool = False) -> Path:
    """Write an H x W uint8 class-id map as PNG (mode L, or P with a palette as some datasets ship)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(label)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise ValueError(f"{path}: expected an H x W uint8 label map, got {arr.dtype} {arr.shape}")
    if palette:
        im = Image.frombytes("P", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
        im.putpalette(_label_palette())
    else:
        im = Image.frombytes("L", (arr.shape[1], arr.shape[0]), np.ascontiguousarray(arr).tobytes())
    im.save(path)
    return path


def _label_palette() -> list[int]:
    """The usual VOC-style bit-interleaved palette, so written labels are viewable."""
    pal = []
    for j in range(256):
        r = g = b = 0
        c, i = j, 0
        while c:
            r |= ((c >> 0) & 1) << (7 - i)
            g |= ((c >> 1) & 1) << (7 - i)
            b |= ((c >> 2) & 1) << (7 - i)
            c >>= 3
            i += 1
        pal += [r, g, b]
    return pal


def to_tensor(image: np.ndarray, mean: tuple[float, ...] | None = None,
              std: tuple[float, ...] | None = None) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W float32 in [0, 1]; normalised per channel only when
    ``mean``/``std`` are given (hcbench's backbones normalise their input themselves)."""
    import torch

    arr = np.ascontiguousarray(image)
    if not arr.flags.writeable:  # PIL-backed arrays are read-only; torch wants to own writable memory
        arr = arr.copy()
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {arr.shape}")
    t = torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)
    if mean is None and std is None:
        return t
    mean = mean if mean is not None else (0.0, 0.0, 0.0)
    std = std if std is not None else (1.0, 1.0, 1.0)
    m = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return t.sub_(m).div_(s)
