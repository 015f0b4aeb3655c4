"""Affine geometry for top-down crops, in the unbiased (UDP) pixel convention.

Convention (Huang et al., "The Devil is in the Details: Delving into Unbiased Data
Processing for Human Pose Estimation", CVPR 2020, and mmpose's ``get_udp_warp_matrix``):
pixel ``i`` has its centre at coordinate ``i``, so an image ``W`` pixels wide spans
``[0, W - 1]``. A box of size ``scale = (sw, sh)`` centred on ``center`` is mapped onto the
output so that its centre lands on ``((W_out - 1) / 2, (H_out - 1) / 2)`` and its width on
``W_out - 1`` pixels. Points and images go through the very same 2x3 matrix: ``warp_image``
samples the source at ``M^-1 (u, v)`` for every output pixel centre ``(u, v)``, so a keypoint
mapped with ``transform_points`` lands exactly where the warped image shows it.

Matrices are float64: the crop, its inverse and the heatmap decode chain stay well inside
1e-4 px of a round trip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

ArrayLike = np.ndarray | Sequence[float]


def _to3x3(m: np.ndarray) -> np.ndarray:
    out = np.eye(3)
    out[:2] = m
    return out


def compose(*matrices: np.ndarray) -> np.ndarray:
    """``compose(A, B)`` maps a point through ``B`` first, then ``A`` (like ``A @ B``)."""
    out = np.eye(3)
    for m in matrices:
        out = out @ _to3x3(np.asarray(m, dtype=np.float64))
    return out[:2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (closed form: ``np.linalg.inv`` costs ~20x more per call,
    and this runs for every training crop)."""
    (a, b, c), (d, e, f) = np.asarray(m, dtype=np.float64).tolist()
    det = a * e - b * d
    if det == 0:
        raise np.linalg.LinAlgError("singular affine matrix")
    ia, ib, id_, ie = e / det, -b / det, -d / det, a / det
    return np.array([[ia, ib, -(ia * c + ib * f)], [id_, ie, -(id_ * c + ie * f)]])


def get_affine(
    center: ArrayLike,
    scale_wh: ArrayLike,
    rot_deg: float,
    output_wh: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """2x3 matrix from image pixels to output pixels (or back with ``inverse=True``).

    ``p_out = S R (p - center) + ((W_out - 1) / 2, (H_out - 1) / 2)`` with
    ``S = diag((W_out - 1) / sw, (H_out - 1) / sh)`` and ``R`` the rotation by ``rot_deg``
    (same sign as mmpose: positive angles turn the box content clockwise on screen).
    """
    cx, cy = (float(v) for v in center)
    sw, sh = (float(v) for v in scale_wh)
    w_out, h_out = output_wh
    if sw <= 0 or sh <= 0:
        raise ValueError(f"box scale must be positive, got {sw}x{sh}")
    if w_out < 2 or h_out < 2:
        raise ValueError(f"output size must be at least 2x2, got {w_out}x{h_out}")
    r = math.radians(rot_deg)
    cos, sin = math.cos(r), math.sin(r)
    sx, sy = (w_out - 1) / sw, (h_out - 1) / sh
    ox, oy = (w_out - 1) / 2.0, (h_out - 1) / 2.0
    if not inverse:
        lin = np.array([[sx * cos, -sx * sin], [sy * sin, sy * cos]])
        t = np.array([ox, oy]) - lin @ np.array([cx, cy])
    else:  # p = R^T S^-1 (q - o) + c, written out so that no matrix inversion is involved
        lin = np.array([[cos / sx, sin / sy], [-sin / sx, cos / sy]])
        t = np.array([cx, cy]) - lin @ np.array([ox, oy])
    return np.concatenate([lin, t[:, None]], axis=1)


def hflip_matrix(width: int) -> np.ndarray:
    """Horizontal flip of an image ``width`` pixels wide: ``x -> width - 1 - x``."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to the first two columns of ``pts`` (shape ``(..., >=2)``).

    Other columns (visibility, scores) are copied unchanged.
    """
    pts = np.asarray(pts)
    m = np.asarray(m, dtype=np.float64)
    out = pts.astype(np.result_type(pts.dtype, np.float32), copy=True)
    xy = pts[..., :2].astype(np.float64)
    out[..., :2] = xy @ m[:, :2].T + m[:, 2]
    return out


def warp_image(
    img: np.ndarray | Image.Image,
    m: np.ndarray,
    out_wh: tuple[int, int],
    *,
    interpolation: str = "bilinear",
    fill: float = 0,
) -> np.ndarray:
    """Warp ``img`` (HxW or HxWxC) with the forward matrix ``m`` (source -> output).

    uint8 images (1, 3 or 4 channels) stay uint8; float images keep their dtype; anything
    else comes back float32.

    Output pixel centre ``(u, v)`` takes the bilinearly interpolated source value at
    ``m^-1 (u, v)``; samples outside the source read ``fill`` (like ``cv2.warpAffine`` with a
    constant border). Uses PIL, whose affine transform evaluates pixel centres at ``+0.5``:
    the matrix is shifted into that convention here, once.
    """
    resample = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}[interpolation]
    inv = invert_affine(m)
    lin, t = inv[:, :2], inv[:, 2]
    # PIL: src_pil = A (u + 0.5) + b and samples at src_pil - 0.5, so b = t + 0.5 - A (0.5, 0.5).
    b = t + 0.5 - lin @ np.array([0.5, 0.5])
    coeffs = (lin[0, 0], lin[0, 1], b[0], lin[1, 0], lin[1, 1], b[1])
    w, h = int(out_wh[0]), int(out_wh[1])

    if isinstance(img, Image.Image) and img.mode in ("L", "RGB", "RGBA"):
        # straight from the decoded image: no round trip through numpy (two copies of the source)
        fc0: float | tuple[int, ...] = int(fill) if img.mode == "L" else (int(fill),) * len(img.mode)
        return np.array(img.transform((w, h), Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=fc0))
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an HxW or HxWxC image, got shape {arr.shape}")
    if arr.dtype == np.uint8 and (arr.ndim == 2 or arr.shape[2] in (3, 4)):
        mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
        fc: float | tuple[int, ...] = int(fill) if arr.ndim == 2 else (int(fill),) * arr.shape[2]
        pil = Image.fromarray(arr, mode=mode)
        # np.array, not asarray: callers get a writable array, not PIL's read-only buffer
        return np.array(pil.transform((w, h), Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=fc))
    # Anything else (float maps, label stacks): one 32-bit float plane at a time.
    planes = arr[..., None] if arr.ndim == 2 else arr
    out = np.empty((h, w, planes.shape[2]), dtype=np.float32)
    for c in range(planes.shape[2]):
        pil = Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32), mode="F")
        out[..., c] = np.asarray(
            pil.transform((w, h), Image.Transform.AFFINE, coeffs, resample=resample, fillcolor=float(fill))
        )
    out = out if arr.ndim == 3 else out[..., 0]
    if arr.dtype != np.float32 and np.issubdtype(arr.dtype, np.floating):
        out = out.astype(arr.dtype)
    return out


def fix_aspect_ratio(scale_wh: ArrayLike, aspect_ratio: float) -> np.ndarray:
    """Grow the shorter side of a ``(w, h)`` box so that ``w / h == aspect_ratio``."""
    w, h = (float(v) for v in scale_wh)
    if w > h * aspect_ratio:
        return np.array([w, w / aspect_ratio])
    return np.array([h * aspect_ratio, h])


def box_to_center_scale(
    bbox: ArrayLike, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """``[x, y, w, h]`` -> (centre, size) of the crop: aspect ratio fixed, then padded.

    Same as mmpose's ``bbox_xywh2cs`` followed by ``TopdownAffine``'s aspect-ratio fix.
    """
    x, y, w, h = (float(v) for v in bbox)
    center = np.array([x + w * 0.5, y + h * 0.5])
    return center, fix_aspect_ratio((w, h), aspect_ratio) * padding
