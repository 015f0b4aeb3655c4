"""Image, parsing, detection and ReID transforms: exact geometry, class swaps, erasing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.data.cards import get_dataset_card
from hcbench.data.transforms import detection as D
from hcbench.data.transforms import parsing as P
from hcbench.data.transforms.image import load_label, load_rgb, open_image, to_tensor, write_image
from hcbench.data.transforms.reid import random_erasing, reid_transform
from hcbench.data.types import DataFormatError, DetectionSample

REAL_SAMPLES = Path(__file__).resolve().parents[2] / "tests" / "real-samples"


# --------------------------------------------------------------------------- image
def test_load_real_jpeg_and_normalise():
    src = REAL_SAMPLES / "coco" / "000000000785.jpg"
    if not src.is_file():
        pytest.skip(f"real sample images not found at {src.parent}")
    img = load_rgb(src)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert open_image(src).size == (img.shape[1], img.shape[0])
    t = to_tensor(img, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    assert t.shape == (3, img.shape[0], img.shape[1]) and t.dtype == torch.float32
    y, x = 7, 11
    want = [(img[y, x, 0] / 255 - 0.5) / 0.5, (img[y, x, 1] / 255 - 0.25) / 0.25, img[y, x, 2] / 255]
    np.testing.assert_allclose(t[:, y, x].numpy(), want, rtol=1e-6, atol=1e-6)


def test_truncated_and_unreadable_images_name_the_file(tmp_path: Path):
    yy, xx = np.mgrid[0:64, 0:64]
    write_image(tmp_path / "ok.jpg", np.stack([yy * 4, xx * 4, yy + xx], -1).astype(np.uint8))
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match=r"cut\.jpg: cannot decode image: .*truncated"):
        load_rgb(tmp_path / "cut.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataFormatError, match=r"junk\.jpg: not a readable image"):
        load_rgb(tmp_path / "junk.jpg")
    with pytest.raises(FileNotFoundError, match=r"absent\.jpg: image file missing"):
        load_rgb(tmp_path / "absent.jpg")
    write_image(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataFormatError, match=r"rgb\.png: label image has mode 'RGB'"):
        load_label(tmp_path / "rgb.png")


# --------------------------------------------------------------------------- parsing
LIP = get_dataset_card("lip").meta()


def _lr_label() -> np.ndarray:
    """Columns 0..5 hold left-arm, right-arm, left-leg, right-leg, left-shoe, right-shoe; then hair, ignore."""
    return np.tile(np.array([14, 15, 16, 17, 18, 19, 2, 255], np.uint8), (3, 1))


def test_parsing_flip_swaps_lip_classes():
    label = _lr_label()
    image = np.arange(3 * 8 * 3, dtype=np.uint8).reshape(3, 8, 3)
    fimg, flab = P.hflip(image, label, LIP)
    # independent expectation: mirror the columns, then rename left <-> right by hand
    swap = {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}
    want = np.vectorize(lambda v: swap.get(int(v), int(v)))(label[:, ::-1])
    np.testing.assert_array_equal(flab, want)
    np.testing.assert_array_equal(flab[0], [255, 2, 18, 19, 16, 17, 14, 15])
    np.testing.assert_array_equal(fimg, image[:, ::-1])
    img2, lab2 = P.hflip(fimg, flab, LIP)  # twice = identity
    np.testing.assert_array_equal(lab2, label)
    np.testing.assert_array_equal(img2, image)


def test_parsing_crop_pads_label_with_ignore():
    rng = np.random.default_rng(0)
    image = np.full((4, 6, 3), 7, np.uint8)
    label = np.full((4, 6), 3, np.uint8)
    img, lab = P.random_crop(image, label, (10, 8), rng)
    assert img.shape == (10, 8, 3) and lab.shape == (10, 8)
    assert (lab[:4, :6] == 3).all() and (lab[4:] == 255).all() and (lab[:, 6:] == 255).all()
    assert (img[4:] == 0).all() and (img[:4, :6] == 7).all()
    big = np.arange(100, dtype=np.uint8).reshape(10, 10)
    _, crop = P.random_crop(np.zeros((10, 10, 3), np.uint8), big, (4, 3), rng)
    y, x = divmod(int(crop[0, 0]), 10)
    np.testing.assert_array_equal(crop, big[y:y + 4, x:x + 3])  # a crop is a window of the original


def test_parsing_resize_keeps_label_values_and_transform_shapes():
    label = np.repeat(np.repeat(np.array([[0, 5], [19, 255]], np.uint8), 8, 0), 8, 1)
    image = np.zeros((16, 16, 3), np.uint8)
    _, lab = P.resize(image, label, (37, 23))
    assert lab.shape == (37, 23) and set(np.unique(lab)) == {0, 5, 19, 255}  # nearest: no new values
    x, y = P.ParsingTransform(LIP, size=(32, 24))(image, label, np.random.default_rng(1))
    assert x.shape == (3, 32, 24) and y.shape == (32, 24) and y.dtype == torch.int64
    assert set(torch.unique(y).tolist()) <= {0, 5, 19, 255}
    x, y = P.ParsingTransform(LIP, size=(32, 24), train=False)(image, label)
    assert y[0, 0] == 0 and y[-1, -1] == 255 and y[0, -1] == 5


# --------------------------------------------------------------------------- detection
def _det_sample() -> DetectionSample:
    boxes = np.array([[10, 20, 30, 40], [0, 0, 100, 50]], np.float32)
    ignore = np.array([[60, 5, 20, 10]], np.float32)
    return DetectionSample(Path("x.jpg"), "x", boxes, boxes.copy(), ignore, heads=boxes[:, :4] / 2)


def test_detection_flip_boxes_exact():
    image = np.zeros((50, 100, 3), np.uint8)
    image[20:60, 10:40] = 255  # the first box, painted
    t = D.target_of(_det_sample())
    fimg, ft = D.hflip(image, t)
    np.testing.assert_array_equal(ft["boxes"], [[60, 20, 30, 40], [0, 0, 100, 50]])
    np.testing.assert_array_equal(ft["ignore"], [[20, 5, 20, 10]])
    np.testing.assert_array_equal(ft["heads"], [[80, 10, 15, 20], [50, 0, 50, 25]])
    ys, xs = np.nonzero(fimg[:, :, 0])
    assert (xs.min(), xs.max() + 1 - xs.min()) == (60, 30)  # painted pixels follow the flipped box
    _, back = D.hflip(fimg, ft)
    for k in ("boxes", "visible", "ignore", "heads"):
        np.testing.assert_array_equal(back[k], t[k])


def test_detection_resize_keeps_aspect_and_maps_boxes():
    assert D.resized_shape(100, 200, short=50, max_size=1000) == (50, 100)
    assert D.resized_shape(200, 100, short=50, max_size=80) == (80, 40)  # capped by max_size
    image = np.zeros((200, 100, 3), np.uint8)
    img, t, (sx, sy) = D.resize(image, D.target_of(_det_sample()), short=50, max_size=80)
    assert img.shape == (80, 40, 3) and (sx, sy) == (0.4, 0.4)
    np.testing.assert_allclose(t["boxes"], [[4, 8, 12, 16], [0, 0, 40, 20]], rtol=0, atol=1e-6)
    np.testing.assert_allclose(t["ignore"], [[24, 2, 8, 4]], rtol=0, atol=1e-6)
    x, t2, scale = D.DetectionTransform(short=50, max_size=80, train=True, flip_prob=1.0)(image, D.target_of(_det_sample()))
    assert x.shape == (3, 80, 40) and scale == (0.4, 0.4)
    np.testing.assert_allclose(t2["boxes"][0], [40 - 4 - 12, 8, 12, 16], atol=1e-6)


# --------------------------------------------------------------------------- reid
def test_random_erasing_changes_only_one_rectangle():
    torch.manual_seed(0)
    erase = random_erasing(probability=1.0)
    for _ in range(20):
        x = torch.randn(3, 64, 32)
        y = erase(x.clone())
        changed = (y != x).any(0)
        ys, xs = torch.nonzero(changed, as_tuple=True)
        assert ys.numel() > 0
        box = changed[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert box.all() and changed.sum() == box.numel()  # a solid rectangle, nothing outside
        area = box.numel() / (64 * 32)
        assert 0.02 - 1e-9 <= area <= 0.4 + 1e-9
        for c, m in enumerate((0.485, 0.456, 0.406)):
            assert torch.allclose(y[c][changed], torch.tensor(m))
    assert torch.equal(random_erasing(probability=0.0)(x), x)


def test_reid_transform_shapes_and_eval_determinism():
    img = np.random.default_rng(0).integers(0, 256, (90, 40, 3), dtype=np.uint8)
    torch.manual_seed(0)
    y = reid_transform(train=True)(img)
    assert y.shape == (3, 256, 128) and y.dtype == torch.float32
    ev = reid_transform(size=(64, 32), train=False)
    a, b = ev(img), ev(img)
    assert torch.equal(a, b) and a.shape == (3, 64, 32)
    flat = np.full((8, 4, 3), 255, np.uint8)
    z = reid_transform(size=(8, 4), train=False)(flat)
    np.testing.assert_allclose(z[:, 0, 0].numpy(), [1.0, 1.0, 1.0], rtol=1e-6)  # [0, 1]: backbones normalise
