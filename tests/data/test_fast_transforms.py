"""The faster training transforms of issue 18 give the old paths' output: the warp read straight
from the decoded PIL image, the closed-form affine inverse, the separable UDP targets, the parsing
crop that resizes only its window, and the ReID transform in uint8 tensor ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hcbench.adapters.pose_codec import encode_udp, heatmap_scale
from hcbench.data.cards import get_dataset_card
from hcbench.data.transforms.geometry import get_affine, invert_affine, warp_image
from hcbench.data.transforms.parsing import hflip, random_crop, resize, resized_random_crop
from hcbench.data.transforms.pose import load_rgb, open_rgb
from hcbench.data.transforms.reid import ReIDCrop, reid_transform

MATRICES = [((300, 200), (180, 240), 15.0), ((300, 250), (600, 800), -30.0), ((100, 100), (60, 80), 0.0),
            ((620, 400), (180, 240), 70.0), ((-50, 30), (200, 260), 5.0)]


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _old_invert(m: np.ndarray) -> np.ndarray:
    full = np.eye(3)
    full[:2] = m
    return np.linalg.inv(full)[:2]


@pytest.mark.parametrize("center,scale,rot", MATRICES)
def test_warp_from_the_decoded_image_equals_the_array_path(real_samples, center, scale, rot):
    path = real_samples / "coco" / "000000000785.jpg"
    m = get_affine(center, scale, rot, (192, 256))
    np.testing.assert_allclose(invert_affine(m), _old_invert(m), rtol=0, atol=1e-9)
    fast = warp_image(open_rgb(path), m, (192, 256))
    old = warp_image(np.array(load_rgb(path)), m, (192, 256))
    assert fast.dtype == np.uint8 and fast.shape == (256, 192, 3) and fast.flags.writeable
    np.testing.assert_array_equal(fast, old)
    # and both agree with a plain bilinear sampler of the same matrix (interpolation tolerance)
    img = load_rgb(path).astype(np.float64)
    inv = invert_affine(m)
    v, u = np.mgrid[0:256:7, 0:192:7]
    sx, sy = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2], inv[1, 0] * u + inv[1, 1] * v + inv[1, 2]
    ok = (sx >= 1) & (sy >= 1) & (sx <= img.shape[1] - 2) & (sy <= img.shape[0] - 2)
    x0, y0 = np.floor(sx[ok]).astype(int), np.floor(sy[ok]).astype(int)
    fx, fy = (sx[ok] - x0)[:, None], (sy[ok] - y0)[:, None]
    ref = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
           + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)
    if ok.any():
        assert np.abs(fast[v[ok], u[ok]].astype(np.float64) - ref).max() <= 1.0 + 1e-9


def test_separable_udp_targets_equal_the_dense_formula():
    rng = np.random.default_rng(0)
    kp = rng.uniform(-20, 210, (17, 2)).astype(np.float32)
    vis = (rng.random(17) > 0.2).astype(np.float32)
    heat, w = encode_udp(kp, vis, (192, 256), (48, 64), 2.0)
    mu = kp / heat_scale()
    centre = np.floor(mu + 0.5)
    ys, xs = np.mgrid[0:64, 0:48].astype(np.float32)
    dense = np.exp(-((xs - mu[:, 0, None, None]) ** 2 + (ys - mu[:, 1, None, None]) ** 2) / 8.0)
    dense *= (np.abs(xs - centre[:, 0, None, None]) <= 6) & (np.abs(ys - centre[:, 1, None, None]) <= 6)
    dense *= w[:, None, None]
    np.testing.assert_allclose(heat, dense, rtol=0, atol=1e-6)
    assert heat.dtype == np.float32 and w.dtype == np.float32


def heat_scale() -> np.ndarray:
    return heatmap_scale((192, 256), (48, 64))


@pytest.mark.parametrize("resized_hw,flip", [((90, 70), False), ((90, 70), True), ((30, 20), True),
                                             ((48, 100), False), ((130, 40), True)])
def test_parsing_crop_then_resize_equals_resize_then_crop(resized_hw, flip):
    meta = get_dataset_card("lip").meta()
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (45, 35, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:45, 0:35]
    label = ((yy // 5 + xx // 4) % meta.num_classes).astype(np.uint8)
    size = (48, 40)
    for seed in range(5):
        img, lab = resized_random_crop(image, label, resized_hw, size, np.random.default_rng(seed), meta, flip)
        ri, rl = resize(image, label, resized_hw)
        if flip:
            ri, rl = hflip(ri, rl, meta)
        ri, rl = random_crop(ri, rl, size, np.random.default_rng(seed), meta.ignore_index)
        assert img.shape == ri.shape and lab.shape == rl.shape
        assert np.abs(img.astype(int) - ri.astype(int)).max() <= 1
        assert (lab != rl).mean() <= 0.002


def test_reid_crop_eval_path_equals_torchvision():
    img = np.random.default_rng(2).integers(0, 256, (150, 61, 3), dtype=np.uint8)
    for size in [(256, 128), (64, 32)]:
        assert torch.equal(ReIDCrop(size, train=False)(img), reid_transform(size, train=False)(img))


def test_reid_crop_train_ops_equal_torchvision_for_fixed_draws():
    """Flip + pad/crop + erase as slices give torchvision's ops with the same parameters."""
    from torchvision.transforms.v2 import functional as TF

    img = np.random.default_rng(3).integers(0, 256, (150, 61, 3), dtype=np.uint8)

    class Draws:  # a generator that returns fixed draws in the order ReIDCrop asks for them
        def __init__(self, flip: bool, dy: int, dx: int):
            self.r = [0.0 if flip else 0.99, 0.99]  # flip?, erase? (no)
            self.dydx = np.array([dy, dx])

        def random(self):
            return self.r.pop(0)

        def integers(self, lo, hi, size=None):
            return self.dydx

    for flip, dy, dx in [(True, 0, 20), (False, 20, 0), (True, 10, 10), (False, 3, 17)]:
        out = ReIDCrop((64, 32), train=True, pad=10, erase=0.5)(img, rng=Draws(flip, dy, dx))
        x = TF.resize(torch.from_numpy(img).permute(2, 0, 1), [64, 32], antialias=True)
        x = TF.horizontal_flip(x) if flip else x
        x = TF.pad(x, [10])[:, dy:dy + 64, dx:dx + 32]
        assert torch.equal(out, TF.to_dtype(x, torch.float32, scale=True)), (flip, dy, dx)


def test_open_rgb_converts_grey_and_names_missing_files(tmp_path):
    Image.fromarray(np.full((5, 4), 7, np.uint8), mode="L").save(tmp_path / "g.png")
    im = open_rgb(tmp_path / "g.png")
    assert im.mode == "RGB" and im.size == (4, 5)
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        open_rgb(tmp_path / "nope.jpg")
