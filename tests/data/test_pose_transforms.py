"""Top-down geometry: UDP affine, image/point consistency, flips, half-body, normalisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from hcbench.data.cards import load_dataset_card
from hcbench.data.readers.coco import read_coco_keypoints
from hcbench.data.readers.mpii import read_mpii_json
from hcbench.data.transforms.geometry import (
    box_to_center_scale,
    compose,
    get_affine,
    invert_affine,
    transform_points,
    warp_image,
)
from hcbench.data.transforms.pose import TopDownTransform, flip_back, flip_heatmaps, flip_keypoints
from hcbench.data.types import DataFormatError, PoseInstance

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "tests" / "real-samples"
CARDS = REPO / "datasets"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real samples not found at {SAMPLES}")


def meta(name: str):
    return load_dataset_card(CARDS / f"{name}.yaml").meta()


def coco_person(ann_id: int = 442619) -> PoseInstance:
    split = read_coco_keypoints(SAMPLES / "coco/test_coco.json", SAMPLES / "coco", meta("coco"), name="coco",
                                split="val")
    return next(s for s in split.samples if s.ann_id == ann_id)


# ------------------------------------------------------------------------- affine
def test_affine_matches_udp_definition():
    c, s, out = (100.0, 50.0), (40.0, 80.0), (48, 64)
    m = get_affine(c, s, 0.0, out)
    # centre -> ((W-1)/2, (H-1)/2); box edges -> 0 and W-1 / H-1
    np.testing.assert_allclose(transform_points(np.array([[100.0, 50.0], [80.0, 10.0], [120.0, 90.0]]), m),
                               [[23.5, 31.5], [0, 0], [47, 63]], atol=1e-12)
    # with rotation: three correspondences solved independently of get_affine
    rot, r = 30.0, math.radians(30.0)
    sx, sy = 47 / 40, 63 / 80
    src = np.array([[100.0, 50.0], [110.0, 50.0], [100.0, 65.0]])
    dst = np.array([[23.5, 31.5],
                    [23.5 + sx * 10 * math.cos(r), 31.5 + sy * 10 * math.sin(r)],
                    [23.5 - sx * 15 * math.sin(r), 31.5 + sy * 15 * math.cos(r)]])
    a = np.linalg.solve(np.column_stack([src, np.ones(3)]), dst).T
    np.testing.assert_allclose(get_affine(c, s, rot, out), a, atol=1e-9)


def test_inverse_affine_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = rng.uniform(-100, 1000, 2)
        s = rng.uniform(5, 800, 2)
        rot = rng.uniform(-180, 180)
        out = (int(rng.integers(8, 400)), int(rng.integers(8, 400)))
        fwd, inv = get_affine(c, s, rot, out), get_affine(c, s, rot, out, inverse=True)
        pts = rng.uniform(-500, 1500, (20, 2))
        np.testing.assert_allclose(transform_points(transform_points(pts, fwd), inv), pts, atol=1e-4)
        np.testing.assert_allclose(inv, invert_affine(fwd), atol=1e-9)
        np.testing.assert_allclose(compose(fwd, inv), np.eye(3)[:2], atol=1e-9)


def test_transform_points_keeps_extra_columns():
    pts = np.array([[[1.0, 2.0, 2.0], [3.0, 4.0, 0.0]]], dtype=np.float32)
    out = transform_points(pts, np.array([[2.0, 0, 1], [0, 3.0, -1]]))
    np.testing.assert_array_equal(out, [[[3, 5, 2], [7, 11, 0]]])
    assert out.dtype == np.float32 and pts[0, 0, 0] == 1.0


def test_box_to_center_scale():
    c, s = box_to_center_scale([10, 20, 30, 80], aspect_ratio=0.75)
    np.testing.assert_allclose(c, [25, 60])
    np.testing.assert_allclose(s, [75, 100])  # width grown to 80 * 0.75 = 60, then x 1.25
    c, s = box_to_center_scale([0, 0, 100, 20], aspect_ratio=1.0, padding=1.0)
    np.testing.assert_allclose(s, [100, 100])


def test_warp_image_matches_scipy_reference():
    """PIL's warp against scipy.ndimage (pixel centres at integers, bilinear, zero outside)."""
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 255, (60, 80)).astype(np.float32)
    m = get_affine((40, 25), (50, 30), 25.0, (33, 21))
    out = warp_image(img, m, (33, 21))
    inv = invert_affine(m)
    # scipy works in (row, col): input[(r, c)] = inv applied to output (x=c, y=r)
    mat = np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]])
    ref = ndimage.affine_transform(img.astype(np.float64), mat, offset=[inv[1, 2], inv[0, 2]],
                                   output_shape=(21, 33), order=1, mode="constant", cval=0.0)
    assert out.shape == (21, 33) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-3)
    rgb = np.repeat(img.astype(np.uint8)[..., None], 3, axis=2)
    out8 = warp_image(rgb, m, (33, 21))
    assert out8.dtype == np.uint8 and out8.shape == (21, 33, 3)
    assert np.abs(out8[..., 1].astype(float) - ndimage.affine_transform(
        rgb[..., 1].astype(float), mat, offset=[inv[1, 2], inv[0, 2]], output_shape=(21, 33), order=1)).max() <= 1


# ------------------------------------------------------------------------- dot test
def _dot_centroid(diff: np.ndarray) -> np.ndarray:
    w = np.clip(diff, 0, None)
    w[w < 0.1 * w.max()] = 0
    ys, xs = np.indices(w.shape)
    return np.array([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])


@needs_samples
def test_keypoint_lands_on_the_warped_dot():
    """Draw a dot at a keypoint of a real image; the crop shows it where the keypoint maps."""
    person = coco_person()
    img = np.asarray(Image.open(person.image).convert("RGB")).astype(np.float64)
    k = 9  # left_wrist (449, 165)
    x0, y0 = person.keypoints[k, :2]
    ys, xs = np.indices(img.shape[:2])
    blob = 120 * np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * 3.0**2))
    dotted = np.clip(img + blob[..., None], 0, 255).astype(np.uint8)
    plain = np.clip(img, 0, 255).astype(np.uint8)
    fi = meta("coco").flip_index()
    seen = set()
    tf = TopDownTransform(meta("coco"), (256, 192), train=True, scale=(0.75, 1.25), rotate=40, half_body=0.0)
    for seed in (0, 2, 4, 8):  # rotated, flipped, plain, flipped and rotated
        a = tf(person, image=dotted, rng=np.random.default_rng(seed))
        b = tf(person, image=plain, rng=np.random.default_rng(seed))
        np.testing.assert_array_equal(a.matrix, b.matrix)
        found = _dot_centroid(a.image.astype(float).sum(-1) - b.image.astype(float).sum(-1))
        j = fi[k] if a.flipped else k  # after a flip the left wrist is stored as the right one
        np.testing.assert_allclose(a.keypoints[j, :2], found, atol=0.35)
        np.testing.assert_allclose(transform_points(np.array([x0, y0]), a.matrix), found, atol=0.35)
        seen.add((a.flipped, a.rotation != 0))
    assert seen == {(False, True), (True, False), (False, False), (True, True)}


# ------------------------------------------------------------------------- flips
@pytest.mark.parametrize("name", ["coco", "mpii", "aic", "crowdpose", "ochuman", "mhp"])
def test_flip_index_swaps_left_and_right_names(name):
    m = meta(name)
    names = list(m.keypoint_names)

    def mirror(n: str) -> str:
        return n.replace("left", "@").replace("right", "left").replace("@", "right")

    fi = m.flip_index()
    assert [names[fi[i]] for i in range(len(names))] == [mirror(n) for n in names]


def test_flip_keypoints_and_heatmaps():
    m = meta("coco")
    fi = m.flip_index()
    rng = np.random.default_rng(0)
    kp = np.column_stack([rng.uniform(0, 191, (17, 2)), np.ones(17)])
    f = flip_keypoints(kp, fi, 192)
    assert f[5, 0] == pytest.approx(191 - kp[6, 0]) and f[5, 1] == kp[6, 1]  # left_shoulder <- right_shoulder
    np.testing.assert_allclose(flip_keypoints(f, fi, 192), kp, atol=1e-12)  # twice = identity
    hm = rng.random((2, 17, 64, 48)).astype(np.float32)
    np.testing.assert_array_equal(flip_heatmaps(flip_heatmaps(hm, fi), fi), hm)
    np.testing.assert_array_equal(flip_back(hm, fi)[1, 5], hm[1, 6, :, ::-1])
    t = torch.from_numpy(hm)
    np.testing.assert_array_equal(flip_back(t, fi).numpy(), flip_heatmaps(hm, fi))
    np.testing.assert_allclose(flip_back(torch.from_numpy(kp), fi, 192).numpy(), f)


def test_udp_heatmap_flip_needs_no_shift():
    """Gaussians drawn for flipped input keypoints == mirrored heatmaps of the original ones."""
    fi = meta("coco").flip_index()
    rng = np.random.default_rng(1)
    w_in, h_in, w_hm, h_hm = 192, 256, 48, 64
    kp = np.column_stack([rng.uniform(0, w_in - 1, 17), rng.uniform(0, h_in - 1, 17)])

    def heatmaps(pts):
        ys, xs = np.indices((h_hm, w_hm))
        hx, hy = pts[:, 0] * (w_hm - 1) / (w_in - 1), pts[:, 1] * (h_hm - 1) / (h_in - 1)  # UDP scaling
        return np.exp(-((xs - hx[:, None, None]) ** 2 + (ys - hy[:, None, None]) ** 2) / 8.0)

    np.testing.assert_allclose(flip_heatmaps(heatmaps(flip_keypoints(kp, fi, w_in)), fi), heatmaps(kp), atol=1e-9)


@needs_samples
def test_flipped_crop_is_the_mirrored_crop():
    person = coco_person()
    tf = TopDownTransform(meta("coco"), (256, 192), train=True, scale=(1.0, 1.0), rotate=0, half_body=0.0)
    crops = {}
    for seed in range(10):
        s = tf(person, rng=np.random.default_rng(seed))
        crops.setdefault(s.flipped, s)
    plain, flipped = crops[False], crops[True]
    assert np.abs(flipped.image.astype(int) - plain.image[:, ::-1].astype(int)).max() <= 1
    fi = meta("coco").flip_index()
    np.testing.assert_allclose(flipped.keypoints, flip_keypoints(plain.keypoints, fi, 192), atol=1e-3)
    # predictions on the flipped crop map back to the original image coordinates
    np.testing.assert_allclose(flipped.to_original(flipped.keypoints[fi])[:, :2], person.keypoints[:, :2], atol=1e-3)


# ------------------------------------------------------------------------- half body
@needs_samples
def test_half_body_keeps_only_upper_or_lower_ids():
    m = meta("coco")
    person = coco_person()  # all 17 keypoints labelled
    tf = TopDownTransform(m, (256, 192), train=True, scale=(1.0, 1.0), rotate=0, flip=False, half_body=1.0)
    kinds = set()
    for seed in range(12):
        s = tf(person, rng=np.random.default_rng(seed))
        kinds.add(s.half_body)
        ids = list(s.half_body_ids)
        group = m.upper_body_ids if s.half_body == "upper" else m.lower_body_ids
        assert ids == list(group)  # every labelled id of one half, none of the other
        np.testing.assert_allclose(s.center, person.keypoints[ids, :2].mean(axis=0), atol=1e-9)
        kp = s.keypoints
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= 191) & (kp[:, 1] >= 0) & (kp[:, 1] <= 255)
        assert inside[ids].all()
        far = [15, 16] if s.half_body == "upper" else [0, 1, 2]  # ankles / face leave the crop
        assert not inside[far].any()
    assert kinds == {"upper", "lower"}
    few = coco_person(198196)  # 14 labelled but try with a person below the 9-keypoint minimum
    few.keypoints[:8, 2] = 0
    assert tf(few, rng=np.random.default_rng(0)).half_body is None


# ------------------------------------------------------------------------- eval mode, output types
@needs_samples
def test_eval_crop_normalised_tensor_and_back_mapping():
    person = coco_person()
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    tf = TopDownTransform(meta("coco"), (256, 192), train=False, mean=mean, std=std)
    s = tf(person)
    c, sc = box_to_center_scale(person.bbox, 0.75, 1.25)
    np.testing.assert_allclose(s.center, c)
    np.testing.assert_allclose(s.scale, sc)
    assert not s.flipped and s.rotation == 0 and s.half_body is None
    assert isinstance(s.image, torch.Tensor) and s.image.shape == (3, 256, 192) and s.image.dtype == torch.float32
    raw = TopDownTransform(meta("coco"), (256, 192), train=False)(person)
    assert raw.image.shape == (256, 192, 3) and raw.image.dtype == np.uint8
    want = (torch.from_numpy(raw.image).permute(2, 0, 1).float() / 255 - torch.tensor(mean)[:, None, None]) / \
        torch.tensor(std)[:, None, None]
    torch.testing.assert_close(s.image, want)
    np.testing.assert_allclose(s.to_original(s.keypoints)[:, :2], person.keypoints[:, :2], atol=1e-3)


@needs_samples
def test_mpii_crop_and_size_check():
    person = read_mpii_json(SAMPLES / "mpii/test_mpii.json", SAMPLES / "mpii", meta("mpii")).samples[0]
    s = TopDownTransform(meta("mpii"), (256, 256), train=False)(person)
    np.testing.assert_allclose(s.scale, [200 * 4.718488 * 1.25] * 2, rtol=1e-6)  # square person box, padded
    np.testing.assert_allclose(s.center, [965.0, 339.0 + 15 * 4.718488], rtol=1e-6)
    coco = coco_person()
    coco.width = 641
    with pytest.raises(DataFormatError, match=r"000000000785\.jpg \[record image id=785\]: image is 640x425"):
        TopDownTransform(meta("coco"), (256, 192), train=False)(coco)
