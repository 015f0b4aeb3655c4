"""Heatmap encoding and decoding for top-down pose: UDP Gaussian targets with DARK-UDP decoding
(``udp_gaussian``), and the classic MSRA targets with the quarter-pixel decoding (``msra_gaussian``,
see :func:`encode_msra`).

Coordinate conventions (all in pixel *indices*, x right, y down):

* **input** coordinates: pixels of the network input crop of size ``W x H``;
* **heatmap** coordinates: pixels of the ``w x h`` heatmap (``w = W / stride``).

Encoding follows UDP ("unbiased data processing", Huang et al., CVPR 2020): the two grids are
aligned at their *end points*, ``x_hm = x_in * (w - 1) / (W - 1)``, and the Gaussian is centred
at the exact (sub-pixel) keypoint, not at a rounded one. Only the window within ``3 sigma`` of
the rounded centre is non-zero, as in the reference implementation (mmpose ``UDPHeatmap``).

Decoding is the argmax followed by the DARK sub-pixel refinement in its UDP form (Zhang et al.,
CVPR 2020; mmpose ``refine_keypoints_dark_udp``): the heatmap is smoothed with a Gaussian
kernel (size 11 by default, OpenCV's sigma rule), the log taken, and one Newton step
``-H^-1 g`` is made from the argmax using central finite differences. On a noise-free Gaussian
the log-heatmap is exactly quadratic, so the step lands on the true centre.

Flip test: because UDP aligns pixel ``0`` with pixel ``0`` and ``W - 1`` with ``w - 1``, the
heatmaps of a horizontally flipped crop are aligned with the original ones by a plain array
flip plus the left/right channel swap (``hcbench.data.transforms.pose.flip_heatmaps``); no
one-pixel shift is applied (that shift belongs to the biased, non-UDP encoding).

Smoothing uses zero padding as the reference does, so keypoints within ~``blur_kernel / 2``
heatmap pixels of the border are pulled inwards by up to about one heatmap pixel; elsewhere
a noise-free target decodes back to within 1e-3 px.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def heatmap_scale(input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> np.ndarray:
    """Factor ``(sx, sy)`` with ``x_in = x_hm * sx``; sizes are ``(W, H)`` and ``(w, h)``."""
    (W, H), (w, h) = input_size, heatmap_size
    if min(w, h) < 2:
        raise ValueError(f"heatmap size {heatmap_size} is too small for UDP (needs >= 2 pixels per side)")
    return np.array([(W - 1) / (w - 1), (H - 1) / (h - 1)], dtype=np.float32)


def encode_udp(keypoints: np.ndarray, visible: np.ndarray, input_size: tuple[int, int],
               heatmap_size: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """UDP Gaussian heatmaps for one instance.

    ``keypoints``: ``(K, 2)`` in input coordinates; ``visible``: ``(K,)``, > 0 where annotated.
    Returns ``heatmaps (K, h, w)`` float32 in [0, 1] and ``weights (K,)`` float32 in {0, 1};
    a keypoint whose Gaussian window lies wholly outside the heatmap gets weight 0.
    """
    w, h = heatmap_size
    k = len(keypoints)
    mu = np.asarray(keypoints, dtype=np.float32) / heatmap_scale(input_size, heatmap_size)
    weights = (np.asarray(visible, dtype=np.float32).reshape(k) > 0).astype(np.float32)
    radius = 3 * sigma
    centre = np.floor(mu + 0.5)
    inside = ((centre[:, 0] - radius < w) & (centre[:, 0] + radius >= 0)
              & (centre[:, 1] - radius < h) & (centre[:, 1] + radius >= 0))
    weights *= inside
    # the Gaussian and its square window are separable: K x (h + w) exponentials, not K x h x w
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[None, :]
    gx = np.exp(-((xs - mu[:, :1]) ** 2) / (2.0 * sigma**2)) * (np.abs(xs - centre[:, :1]) <= radius)
    gy = np.exp(-((ys - mu[:, 1:]) ** 2) / (2.0 * sigma**2)) * (np.abs(ys - centre[:, 1:]) <= radius)
    heat = (gy * weights[:, None])[:, :, None] * gx[:, None, :]
    return heat.astype(np.float32), weights


def _blur_kernel(size: int) -> torch.Tensor:
    # OpenCV's rule for GaussianBlur(ksize, sigma=0), which the reference decoder uses
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _gaussian_blur(heatmaps: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur of ``B x K x h x w``; zero borders, as the reference decoder pads."""
    b, k, h, w = heatmaps.shape
    g = _blur_kernel(size).to(heatmaps)
    x = heatmaps.reshape(b * k, 1, h, w)
    pad = size // 2
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, pad))
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(pad, 0))
    return x.reshape(b, k, h, w)


def heatmap_argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer argmax ``(B, K, 2)`` as ``(x, y)`` float and the maximum ``(B, K)``."""
    b, k, h, w = heatmaps.shape
    vals, idx = heatmaps.reshape(b, k, -1).max(dim=-1)
    xy = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return xy, vals


def refine_dark(heatmaps: torch.Tensor, coords: torch.Tensor, blur_kernel: int = 11) -> torch.Tensor:
    """DARK(-UDP) Newton step from integer ``coords (B, K, 2)`` on the smoothed log-heatmap."""
    b, k, h, w = heatmaps.shape
    hm = heatmaps.float()
    if blur_kernel and blur_kernel > 1:
        hm = _gaussian_blur(hm, blur_kernel)
    logh = torch.log(hm.clamp(1e-3, 50.0))
    # edge-replicated padding so that finite differences at the border stay defined
    logp = F.pad(logh.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(b, k, h + 2, w + 2)
    x = coords[..., 0].long().clamp(0, w - 1) + 1
    y = coords[..., 1].long().clamp(0, h - 1) + 1

    def at(dy: int, dx: int) -> torch.Tensor:
        return torch.gather(logp.reshape(b, k, -1), 2, ((y + dy) * (w + 2) + (x + dx)).unsqueeze(-1)).squeeze(-1)

    c = at(0, 0)
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2 * c + at(0, -1)
    hyy = at(1, 0) - 2 * c + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    # a Newton step is only meaningful at a proper maximum (negative-definite Hessian)
    ok = (det > 1e-6) & (hxx < 0)
    safe = torch.where(ok, det, torch.ones_like(det))
    step_x = -(hyy * gx - hxy * gy) / safe
    step_y = -(-hxy * gx + hxx * gy) / safe
    step = torch.stack([step_x, step_y], dim=-1)
    step = torch.where(ok.unsqueeze(-1), step.clamp(-1.0, 1.0), torch.zeros_like(step))
    return coords.float() + step


def decode_heatmaps(heatmaps: torch.Tensor, input_size: tuple[int, int], *, refine: str = "dark",
                    blur_kernel: int = 11, codec: str = "udp_gaussian") -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints ``(B, K, 2)`` in *input* coordinates and their scores ``(B, K)`` (heatmap maxima).

    ``codec="udp_gaussian"``: ``refine`` is ``"dark"`` (DARK-UDP, the default) or ``"none"`` (integer
    argmax). ``codec="msra_gaussian"``: see :func:`decode_msra` (``"quarter"`` or ``"none"``).
    """
    if codec == "msra_gaussian":
        return decode_msra(heatmaps, input_size, refine=refine)
    if codec != "udp_gaussian":
        raise ValueError(f"unknown heatmap codec {codec!r}; use 'udp_gaussian' or 'msra_gaussian'")
    b, k, h, w = heatmaps.shape
    coords, scores = heatmap_argmax(heatmaps)
    if refine == "dark":
        coords = refine_dark(heatmaps, coords, blur_kernel)
    elif refine != "none":
        raise ValueError(f"unknown heatmap refinement {refine!r}; use 'dark' or 'none'")
    scale = torch.as_tensor(heatmap_scale(input_size, (w, h)), device=coords.device)
    return coords * scale, scores


# --------------------------------------------------------------------------- MSRA
# The classic SimpleBaseline encoding (Xiao et al., ECCV 2018; mmpose ``MSRAHeatmap`` /
# ``TopDownGenerateTarget(sigma=2)``, the target of ViTPose's whole-body and AP-10K configs):
# heatmap coordinates are input coordinates divided by the stride (``x_hm = x_in * w / W``, no
# end-point alignment) and the Gaussian sits on the *rounded* keypoint, so a target carries up to
# half a heatmap pixel of quantisation. Decoding (ViTPose 0.x ``post_process='default'``) takes the
# argmax and moves a quarter pixel towards the higher neighbour on each axis, then multiplies by
# the stride. With this encoding a flipped crop's heatmaps, once mirrored back, sit ~3/4 heatmap
# pixel left of the original ones, which is why flip test shifts them one pixel right
# (mmpose ``shift_heatmap=True``; :func:`align_flipped`).


def msra_scale(input_size: tuple[int, int], heatmap_size: tuple[int, int]) -> np.ndarray:
    """Factor ``(sx, sy)`` with ``x_in = x_hm * sx`` under the MSRA convention (the stride)."""
    (W, H), (w, h) = input_size, heatmap_size
    return np.array([W / w, H / h], dtype=np.float32)


def encode_msra(keypoints: np.ndarray, visible: np.ndarray, input_size: tuple[int, int],
                heatmap_size: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """MSRA Gaussian heatmaps for one instance (same contract as :func:`encode_udp`).

    The centre is ``int(x_hm + 0.5)`` (truncation, as the reference does); pixels within ``3 sigma``
    of it on each axis get ``exp(-d^2 / (2 sigma^2))``. A keypoint whose window lies wholly outside
    the heatmap, or that is not labelled (``visible <= 0``), gets weight 0 and an empty map.
    """
    w, h = heatmap_size
    k = len(keypoints)
    mu = np.asarray(keypoints, dtype=np.float32).reshape(k, 2) / msra_scale(input_size, heatmap_size)
    weights = (np.asarray(visible, dtype=np.float32).reshape(k) > 0).astype(np.float32)
    radius = 3 * sigma
    centre = np.trunc(mu + 0.5)
    ul, br = centre - radius, centre + radius + 1
    inside = (ul[:, 0] < w) & (ul[:, 1] < h) & (br[:, 0] >= 0) & (br[:, 1] >= 0)
    weights *= inside
    dx = np.arange(w, dtype=np.float32)[None, None, :] - centre[:, 0, None, None]
    dy = np.arange(h, dtype=np.float32)[None, :, None] - centre[:, 1, None, None]
    heat = np.exp(-(dx**2 + dy**2) / (2.0 * sigma**2)) * ((np.abs(dx) <= radius) & (np.abs(dy) <= radius))
    return (heat * weights[:, None, None]).astype(np.float32), weights


def refine_quarter(heatmaps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """A quarter pixel from the integer ``coords (B, K, 2)`` towards the higher neighbour on each
    axis; only where the argmax is off the outer two rows/columns (``1 < x < w - 1`` and
    ``1 < y < h - 1``, ViTPose 0.x's rule), elsewhere the argmax stays."""
    b, k, h, w = heatmaps.shape
    x, y = coords[..., 0].long(), coords[..., 1].long()
    ok = (x > 1) & (x < w - 1) & (y > 1) & (y < h - 1)
    xs, ys = x.clamp(1, w - 2), y.clamp(1, h - 2)
    flat = heatmaps.reshape(b, k, -1)

    def at(yy: torch.Tensor, xx: torch.Tensor) -> torch.Tensor:
        return torch.gather(flat, 2, (yy * w + xx).unsqueeze(-1)).squeeze(-1)

    diff = torch.stack([at(ys, xs + 1) - at(ys, xs - 1), at(ys + 1, xs) - at(ys - 1, xs)], dim=-1)
    step = 0.25 * torch.sign(diff) * ok.unsqueeze(-1)
    return coords.float() + step.to(torch.float32)


def decode_msra(heatmaps: torch.Tensor, input_size: tuple[int, int], *, refine: str = "quarter"
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """MSRA decoding: argmax, the quarter-pixel refinement (``refine="quarter"``, or ``"none"``),
    times the stride. Keypoints ``(B, K, 2)`` in input coordinates, scores ``(B, K)``."""
    b, k, h, w = heatmaps.shape
    coords, scores = heatmap_argmax(heatmaps)
    if refine == "quarter":
        coords = refine_quarter(heatmaps, coords)
    elif refine != "none":
        raise ValueError(f"heatmap refinement {refine!r} is not defined for codec 'msra_gaussian'; "
                         "use 'quarter' (the reference's default) or 'none'")
    scale = torch.as_tensor(msra_scale(input_size, (w, h)), device=coords.device)
    return coords.float() * scale, scores


def align_flipped(heatmaps: torch.Tensor, codec: str) -> torch.Tensor:
    """Flip-test heatmaps already mirrored back (and channel-swapped): UDP needs nothing, MSRA is
    shifted one pixel right (column 0 keeps its value, as the reference's ``shift_heatmap``)."""
    if codec == "udp_gaussian":
        return heatmaps
    if codec != "msra_gaussian":
        raise ValueError(f"unknown heatmap codec {codec!r}; use 'udp_gaussian' or 'msra_gaussian'")
    out = heatmaps.clone()
    out[..., 1:] = heatmaps[..., :-1]
    return out
