"""Top-down pose crops with the mmpose/ViTPose training augmentations, and flip-test helpers.

One transform serves every pose reader (COCO, AIC, CrowdPose, OCHuman, MHP, MPII): it
turns a :class:`~hcbench.data.types.PoseInstance` (box + keypoints in original pixels) into
a fixed-size input crop with keypoints in input pixels and the affine matrix that maps
predictions back. In training it applies, in mmpose's order: random horizontal flip,
half-body crop, random scale / rotation (and optional shift). The flip is folded into the
single affine warp, so the image is resampled once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hcbench.data.transforms.geometry import (
    box_to_center_scale,
    compose,
    fix_aspect_ratio,
    get_affine,
    hflip_matrix,
    invert_affine,
    transform_points,
    warp_image,
)
from hcbench.data.types import DataFormatError, KeypointMeta, PoseInstance


@dataclass
class TopDownSample:
    """One cropped person, ready for the codec.

    ``matrix`` maps original-image pixels to input pixels (flip included), so predictions
    ``p_in`` go back with ``transform_points(p_in, invert_affine(matrix))`` or
    :meth:`to_original`. ``center``/``scale``/``rotation`` describe the crop box (in the
    flipped image when ``flipped``); at evaluation time there is no flip and no rotation.
    Keypoints keep their visibility even when the crop cuts them off: the codec decides
    what lies outside its heatmap.
    """

    image: Any  # (H, W, 3) uint8 numpy array, or (3, H, W) float32 torch tensor when normalised
    keypoints: np.ndarray  # (K, 3) float32: x, y in input pixels; visibility (0 = unlabelled, at 0, 0)
    matrix: np.ndarray  # (2, 3) float64, original image -> input
    center: np.ndarray  # (2,) crop centre in original pixels
    scale: np.ndarray  # (2,) crop size (w, h) in original pixels, aspect ratio == input's
    rotation: float = 0.0
    flipped: bool = False
    half_body: str | None = None  # "upper" / "lower" when the half-body crop was used
    half_body_ids: tuple[int, ...] = ()
    extra: dict = field(default_factory=dict)

    def to_original(self, pts: np.ndarray) -> np.ndarray:
        """Map ``(..., >=2)`` points from input pixels back to original-image pixels."""
        return transform_points(pts, invert_affine(self.matrix))


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as an (H, W, 3) uint8 RGB array (stored pixel order, EXIF not applied,
    like the annotations); a missing or unreadable file raises naming it."""
    return np.asarray(open_rgb(path))


def open_rgb(path: str | Path) -> Image.Image:
    """:func:`load_rgb` as a decoded PIL image: the warp reads it without a copy to numpy."""
    try:
        with Image.open(path) as im:
            im.load()
            return im if im.mode == "RGB" else im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image file not found") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises all three for corrupt files
        raise DataFormatError(path, f"cannot read image: {e}") from e


class TopDownTransform:
    """Crop a person to ``input_hw`` with optional training augmentation.

    ``scale=(lo, hi)``: the box is multiplied by ``mid + half * clip(N(0, 1), -1, 1)``
    (mid/half of the range), as mmpose's ``RandomBBoxTransform``/``TopDownGetRandomScaleRotation``.
    ``rotate=r``: with probability ``rotate_prob`` an angle ``clip(N(0, 1) * r, -2r, 2r)`` degrees
    (ViTPose's ``rot_factor``). ``half_body``: probability of the half-body crop (mmpose
    ``RandomHalfBody``: at least 9 labelled keypoints, >= 2 upper / >= 3 lower, upper preferred
    with probability 0.7, box = keypoint extent x 1.5 around their mean). ``shift``: optional
    centre shift by ``U(-shift, shift)`` x box size with probability ``shift_prob``.
    ``mean``/``std`` (0..1 units, e.g. a timm ``pretrained_cfg``): when given, the image comes
    back as a normalised float32 CHW tensor; otherwise as uint8 HWC numpy.

    Randomness: pass ``rng`` per call for reproducible augmentation (e.g.
    ``np.random.default_rng((seed, epoch, index))``). Without one, the transform's own
    generator is re-seeded from OS entropy in each new process, so forked data-loader
    workers do not repeat each other's augmentations.
    """

    def __init__(
        self,
        meta: KeypointMeta,
        input_hw: tuple[int, int],
        train: bool,
        scale: tuple[float, float] = (0.75, 1.25),
        rotate: float = 40.0,
        flip: bool = True,
        half_body: float = 0.3,
        rng: np.random.Generator | None = None,
        *,
        padding: float = 1.25,
        rotate_prob: float = 0.6,
        shift: float = 0.0,
        shift_prob: float = 0.3,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        half_body_padding: float = 1.5,
        half_body_min_total: int = 9,
        half_body_min_upper: int = 2,
        half_body_min_lower: int = 3,
        upper_prob: float = 0.7,
    ):
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std, or neither")
        self.meta = meta
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.train = train
        self.scale_range = (float(scale[0]), float(scale[1]))
        self.rotate = float(rotate)
        self.flip = flip
        self.half_body = float(half_body)
        self._own_rng = rng is None
        self.rng = rng if rng is not None else np.random.default_rng()
        self._pid = os.getpid()
        self.padding = padding
        self.rotate_prob = rotate_prob
        self.shift = shift
        self.shift_prob = shift_prob
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.std = None if std is None else np.asarray(std, dtype=np.float32)
        self.half_body_padding = half_body_padding
        self.half_body_min_total = half_body_min_total
        self.half_body_min_upper = half_body_min_upper
        self.half_body_min_lower = half_body_min_lower
        self.upper_prob = upper_prob
        self._flip_index = meta.flip_index()

    @property
    def aspect_ratio(self) -> float:
        h, w = self.input_hw
        return w / h

    # -- augmentation steps --------------------------------------------------------------
    def select_half_body(self, keypoints: np.ndarray, rng: np.random.Generator) -> tuple[str, list[int]] | None:
        """Pick the upper or lower body keypoint ids for a half-body crop, or None (mmpose rules)."""
        vis = keypoints[:, 2] > 0
        if vis.sum() < self.half_body_min_total or rng.random() >= self.half_body:
            return None
        upper = [i for i in self.meta.upper_body_ids if vis[i]]
        lower = [i for i in self.meta.lower_body_ids if vis[i]]
        prefer_upper = rng.random() < self.upper_prob
        ok_upper, ok_lower = len(upper) >= self.half_body_min_upper, len(lower) >= self.half_body_min_lower
        if ok_upper and (prefer_upper or not ok_lower):
            return "upper", upper
        if ok_lower:
            return "lower", lower
        return None

    def half_body_box(self, keypoints: np.ndarray, ids: list[int]) -> tuple[np.ndarray, np.ndarray] | None:
        pts = keypoints[ids, :2].astype(np.float64)
        size = (pts.max(axis=0) - pts.min(axis=0)) * self.half_body_padding
        if size.max() <= 0:  # all selected keypoints coincide: no box to crop
            return None
        return pts.mean(axis=0), size

    # -- main entry ----------------------------------------------------------------------
    def __call__(
        self,
        inst: PoseInstance,
        image: np.ndarray | Image.Image | None = None,
        rng: np.random.Generator | None = None,
    ) -> TopDownSample:
        if rng is None:
            if self._own_rng and os.getpid() != self._pid:  # a forked worker: fresh stream
                self.rng, self._pid = np.random.default_rng(), os.getpid()
            rng = self.rng
        img = open_rgb(inst.image) if image is None else image
        if isinstance(img, Image.Image):
            img = img if img.mode == "RGB" else img.convert("RGB")
            img_w, img_h = img.size
        else:
            img = np.asarray(img)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            img_h, img_w = img.shape[:2]
        if inst.width and inst.height and (inst.width, inst.height) != (img_w, img_h):
            raise DataFormatError(
                inst.image, f"image is {img_w}x{img_h} but its annotation says {inst.width}x{inst.height}",
                record=f"image id={inst.image_id}")
        kpts = np.asarray(inst.keypoints, dtype=np.float64).copy()
        center, scale = box_to_center_scale(inst.bbox, self.aspect_ratio, self.padding)
        rot, flipped, hb_name, hb_ids = 0.0, False, None, ()

        if self.train:
            if self.flip and rng.random() < 0.5:
                flipped = True
                kpts = self._flip_instance_keypoints(kpts, img_w)
                center = np.array([img_w - 1 - center[0], center[1]])
            if self.half_body > 0 and self.meta.upper_body_ids and self.meta.lower_body_ids:
                pick = self.select_half_body(kpts, rng)
                box = self.half_body_box(kpts, pick[1]) if pick else None
                if pick and box is not None:
                    hb_name, hb_ids = pick[0], tuple(pick[1])
                    center, scale = box[0], fix_aspect_ratio(box[1], self.aspect_ratio)
            if self.shift > 0 and rng.random() < self.shift_prob:
                center = center + rng.uniform(-self.shift, self.shift, size=2) * scale
            lo, hi = self.scale_range
            scale = scale * ((lo + hi) / 2 + (hi - lo) / 2 * float(np.clip(rng.standard_normal(), -1, 1)))
            if self.rotate > 0 and rng.random() < self.rotate_prob:
                rot = float(np.clip(rng.standard_normal() * self.rotate, -2 * self.rotate, 2 * self.rotate))

        out_wh = (self.input_hw[1], self.input_hw[0])
        crop = get_affine(center, scale, rot, out_wh)
        matrix = compose(crop, hflip_matrix(img_w)) if flipped else crop
        warped = warp_image(img, matrix, out_wh)
        kp_in = transform_points(kpts, crop).astype(np.float32)
        kp_in[kpts[:, 2] <= 0] = 0.0  # unlabelled keypoints stay (0, 0, 0)
        return TopDownSample(
            image=self._finish(warped), keypoints=kp_in, matrix=matrix, center=np.asarray(center, np.float64),
            scale=np.asarray(scale, np.float64), rotation=rot, flipped=flipped, half_body=hb_name,
            half_body_ids=hb_ids,
        )

    def _flip_instance_keypoints(self, kpts: np.ndarray, img_w: int) -> np.ndarray:
        out = flip_keypoints(kpts, self._flip_index, img_w)
        out[out[:, 2] <= 0, :2] = 0.0  # keep unlabelled keypoints at the origin, not at W - 1
        return out

    def _finish(self, img: np.ndarray):
        if self.mean is None:
            return img
        import torch  # heavy import only when a tensor is asked for

        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div_(255.0)  # np.array: writable copy
        mean = torch.from_numpy(self.mean)[:, None, None]
        std = torch.from_numpy(self.std)[:, None, None]
        return x.sub_(mean).div_(std)


# ---------------------------------------------------------------------------- flip test
def _take(x, idx: np.ndarray, axis: int):
    if isinstance(x, np.ndarray):
        return np.take(x, idx, axis=axis)
    import torch

    return torch.index_select(x, axis % x.ndim, torch.as_tensor(idx, device=x.device, dtype=torch.long))


def flip_keypoints(keypoints, flip_index: np.ndarray, width: float):
    """Mirror ``(..., K, >=2)`` keypoints in an image ``width`` pixels wide and swap left/right.

    ``x -> width - 1 - x`` (UDP pixel centres), then keypoint ``k`` takes the values of
    ``flip_index[k]``. numpy arrays and torch tensors both work; the input is not modified.
    """
    out = keypoints.copy() if isinstance(keypoints, np.ndarray) else keypoints.clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return _take(out, np.asarray(flip_index), axis=-2)


def flip_heatmaps(heatmaps, flip_index: np.ndarray):
    """Mirror ``(..., K, H, W)`` heatmaps and swap left/right channels.

    Under the UDP convention a flipped input crop gives heatmaps that are exactly the
    reversed arrays, so no one-pixel shift is applied (mmpose ``shift_heatmap=False``).
    """
    flipped = heatmaps[..., ::-1] if isinstance(heatmaps, np.ndarray) else heatmaps.flip(-1)
    return _take(flipped, np.asarray(flip_index), axis=-3)


def flip_back(x, flip_index: np.ndarray, width: float | None = None):
    """Undo a horizontal flip test: heatmaps ``(..., K, H, W)`` when ``width`` is None,
    else keypoints ``(..., K, >=2)`` in an image/crop ``width`` pixels wide."""
    return flip_heatmaps(x, flip_index) if width is None else flip_keypoints(x, flip_index, width)
