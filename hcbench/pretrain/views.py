"""The multi-view sampler DPAL and SAIP share, over any folder of unlabeled images.

Per image: ``n_global`` person views (256x128 by default; DINO-style crop + flip + colour
jitter + blur/solarize), ``n_local`` local crops (128x96), and a multi-person canvas
(256x256): the first global view (resized to the local size, the "instance") and the last
local crop (the "part") pasted at alpha 0.7 onto another image, their boxes and visible-area
masks recorded, as in the DPAL/SAIP reference samplers. With ``multi_person`` images, a real
crowd image replaces the synthetic canvas with probability ``real_canvas_prob`` (its masks
are then unknown: ``canvas_synthetic`` is False and the masks are zero).

Views are float tensors in [0, 1]; each model normalises with its own mean/std, so teacher
and student may use different statistics. Randomness comes from python/torch RNGs, which the
runner seeds per (seed, epoch, index) so a resumed run sees the same views.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from hcbench.data.types import DataFormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class ViewConfig:
    global_size: tuple[int, int] = (256, 128)
    local_size: tuple[int, int] = (128, 96)
    canvas_size: tuple[int, int] = (256, 256)
    n_global: int = 2
    n_local: int = 2
    global_scale: tuple[float, float] = (0.8, 1.0)  # DPAL/SAIP scripts: --global_crops_scale 0.8 1
    local_scale: tuple[float, float] = (0.05, 0.8)  # DPAL script: --local_crops_scale 0.05 0.8
    aspect: tuple[float, float] | None = None  # crop w/h range; None: 0.8x..1.2x the global view's
    paste_alpha: float = 0.7
    real_canvas_prob: float = 0.5

    @classmethod
    def preset(cls, name: str) -> ViewConfig:
        """``full``: the papers' sizes; ``small``: half size for CPU runs and tests."""
        if name == "full":
            return cls()
        if name == "small":
            return cls(global_size=(128, 64), local_size=(64, 48), canvas_size=(128, 128))
        raise ValueError(f"unknown view preset {name!r}; use 'full' or 'small'")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def list_images(root: str | Path) -> list[Path]:
    """Every jpg/png below ``root`` (recursive), sorted so that indices are stable."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--images {root}: no such folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"--images {root}: no .jpg/.jpeg/.png files found (searched recursively)")
    return files


def load_rgb(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # truncated or not an image: name the file
        raise DataFormatError(path, f"cannot decode image: {e}") from e


def _photometric(blur_p: float, solarize_p: float):
    from torchvision.transforms import v2

    ops = [v2.RandomHorizontalFlip(0.5),
           v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
           v2.RandomGrayscale(0.2)]
    if blur_p > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(9, sigma=(0.1, 2.0))], p=blur_p))
    if solarize_p > 0:
        ops.append(v2.RandomSolarize(128, p=solarize_p))
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    return ops


def _crop_transform(size, scale, ratio, blur_p: float, solarize_p: float):
    from torchvision.transforms import v2

    crop = v2.RandomResizedCrop(size, scale=scale, ratio=ratio, interpolation=v2.InterpolationMode.BICUBIC,
                                antialias=True)
    return v2.Compose([crop, *_photometric(blur_p, solarize_p)])


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased) resize of ``C x H x W`` or ``B x C x H x W`` images."""
    squeeze = x.ndim == 3
    y = F.interpolate(x[None] if squeeze else x, size=tuple(size), mode="bilinear", align_corners=False,
                      antialias=True)
    return y[0] if squeeze else y


def rescaled_size(size: tuple[int, int], factor: float, multiple: int) -> tuple[int, int]:
    """``size * factor`` rounded to a multiple of the patch size (at least one patch)."""
    return tuple(max(multiple, int(round(s * factor / multiple)) * multiple) for s in size)  # type: ignore[return-value]


def rescale(x: torch.Tensor, factor: float, multiple: int = 16) -> torch.Tensor:
    """The rescaled crops of SAIP/DPAL: a batch resized by ``factor``, kept patch-aligned."""
    return resize(x, rescaled_size(tuple(x.shape[-2:]), factor, multiple))


def fit_to_stride(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Resize to the nearest multiple of a ViT's patch size (e.g. a /14 teacher on 256x128 views)."""
    size = rescaled_size(tuple(x.shape[-2:]), 1.0, stride)
    return x if tuple(x.shape[-2:]) == size else resize(x, size)


def paste_boxes(canvas_hw: tuple[int, int], paste_hw: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Two ``(x0, y0, x1, y1)`` boxes: side by side without overlap when the canvas is wide
    enough (the references' layout), else anywhere (the later one then occludes)."""
    (H, W), (ph, pw) = canvas_hw, paste_hw
    if ph > H or pw > W:
        raise ValueError(f"paste size {paste_hw} does not fit the canvas {canvas_hw}")
    if 2 * pw <= W:
        xa = random.randint(0, W - 2 * pw)
        xb = random.randint(xa + pw, W - pw)
        xs = [xa, xb]
    else:
        xs = [random.randint(0, W - pw) for _ in range(2)]
    random.shuffle(xs)
    out = []
    for x in xs:
        y = random.randint(0, H - ph)
        out.append((x, y, x + pw, y + ph))
    return out


class MultiViewDataset(Dataset):
    """Unlabeled images -> dict of views (see the module docstring)."""

    def __init__(self, images: list[Path], cfg: ViewConfig = ViewConfig(), *,
                 backgrounds: list[Path] | None = None, multi_person: list[Path] | None = None):
        if not images:
            raise ValueError("MultiViewDataset needs at least one image")
        if cfg.n_global < 1 or cfg.n_local < 1:
            raise ValueError("the sampler needs at least one global view and one local crop")
        self.images, self.cfg = list(images), cfg
        self.backgrounds = list(backgrounds or [])
        self.multi_person = list(multi_person or [])
        gh, gw = cfg.global_size
        ratio = cfg.aspect or (0.8 * gw / gh, 1.2 * gw / gh)
        # first global view: blur always; the others blur rarely + solarize (DINO's recipe)
        self.global_t = [_crop_transform(cfg.global_size, cfg.global_scale, ratio, 1.0, 0.0)] + [
            _crop_transform(cfg.global_size, cfg.global_scale, ratio, 0.1, 0.2) for _ in range(cfg.n_global - 1)]
        self.local_t = _crop_transform(cfg.local_size, cfg.local_scale, ratio, 0.5, 0.0)
        self.canvas_t = _crop_transform(cfg.canvas_size, (0.2, 1.0), (3 / 4, 4 / 3), 0.1, 0.2)
        self.real_t = _crop_transform(cfg.canvas_size, (0.5, 1.0), (3 / 4, 4 / 3), 0.1, 0.0)

    def __len__(self) -> int:
        return len(self.images)

    def _background(self, index: int):
        pool = self.backgrounds or self.images
        j = random.randrange(len(pool))
        if not self.backgrounds and len(pool) > 1 and j == index:  # another image, not the person itself
            j = (j + 1) % len(pool)
        return load_rgb(pool[j])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        img = load_rgb(self.images[index])
        globals_ = torch.stack([t(img) for t in self.global_t])
        locals_ = torch.stack([self.local_t(img) for _ in range(cfg.n_local)])
        Hc, Wc = cfg.canvas_size
        masks = torch.zeros(2, Hc, Wc)
        boxes = torch.zeros(2, 4)
        if self.multi_person and random.random() < cfg.real_canvas_prob:
            canvas = self.real_t(load_rgb(self.multi_person[random.randrange(len(self.multi_person))]))
            synthetic = False
        else:
            canvas = self.canvas_t(self._background(index))
            persons = [resize(globals_[0], cfg.local_size), locals_[-1]]  # instance, part
            a = cfg.paste_alpha
            for k, (x0, y0, x1, y1) in enumerate(paste_boxes((Hc, Wc), cfg.local_size)):
                region = canvas[:, y0:y1, x0:x1]
                canvas[:, y0:y1, x0:x1] = a * persons[k] + (1 - a) * region
                masks[:k, y0:y1, x0:x1] = 0  # a later paste hides what it covers
                masks[k, y0:y1, x0:x1] = 1
                boxes[k] = torch.tensor([x0, y0, x1, y1], dtype=torch.float32)
            synthetic = True
        return {"globals": globals_, "locals": locals_, "canvas": canvas, "canvas_masks": masks,
                "canvas_boxes": boxes, "canvas_synthetic": torch.tensor(synthetic), "index": torch.tensor(index)}


@dataclass
class MultiViewBatch:
    """A collated batch: ``globals`` B x G x 3 x H x W, ``locals`` B x L x 3 x h x w, ``canvas``
    B x 3 x Hc x Wc, ``canvas_masks`` B x 2 x Hc x Wc (instance, part), ``canvas_boxes`` B x 2 x 4
    (xyxy), ``canvas_synthetic`` B (bool), ``index`` B."""

    globals: torch.Tensor
    locals: torch.Tensor
    canvas: torch.Tensor
    canvas_masks: torch.Tensor
    canvas_boxes: torch.Tensor
    canvas_synthetic: torch.Tensor
    index: torch.Tensor

    def __len__(self) -> int:
        return int(self.globals.shape[0])

    def pin_memory(self) -> MultiViewBatch:  # called by DataLoader(pin_memory=True)
        return MultiViewBatch(**{k: v.pin_memory() for k, v in vars(self).items()})

    def to(self, device: torch.device | str) -> MultiViewBatch:
        return MultiViewBatch(**{k: v.to(device, non_blocking=True) for k, v in vars(self).items()})

    def global_view(self, i: int = 0) -> torch.Tensor:
        return self.globals[:, i]

    def local_view(self, i: int) -> torch.Tensor:
        return self.locals[:, i]


def collate_views(samples: list[dict[str, torch.Tensor]]) -> MultiViewBatch:
    return MultiViewBatch(**{k: torch.stack([s[k] for s in samples]) for k in samples[0]})
