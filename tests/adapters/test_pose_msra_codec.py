"""MSRA heatmap codec (``adapter.codec.type: msra_gaussian``): targets, the quarter-pixel decoding,
flip-test alignment (the one-pixel shift), card options and the adapter's predict path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from hcbench.adapters.pose import PoseAdapter, TopDownDataset, adapter_options
from hcbench.adapters.pose_codec import align_flipped, decode_heatmaps, decode_msra, encode_msra, msra_scale
from hcbench.cards import TaskCard, get_card, resolve
from hcbench.data.cards import get_dataset_card
from hcbench.data.transforms.pose import flip_heatmaps, flip_keypoints

IN_WH, HM_WH = (96, 128), (24, 32)  # stride 4
COCO_META = get_dataset_card("coco").meta()


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _card(name: str, **adapter) -> TaskCard:
    data = resolve(get_card(name), "smoke").model_dump()
    if adapter:
        data["adapter"] = {**data["adapter"], **adapter}
    return TaskCard.model_validate(data)


# --------------------------------------------------------------------------- encode / decode
def test_msra_target_is_the_gaussian_on_the_rounded_keypoint():
    kp = np.array([[41.3, 50.9], [3.0, 2.0]], np.float32)  # heatmap (10.325, 12.725) and (0.75, 0.5)
    heat, w = encode_msra(kp, np.array([2, 1]), IN_WH, HM_WH, 2.0)
    assert heat.shape == (2, 32, 24) and w.tolist() == [1.0, 1.0]
    # int(x / 4 + 0.5): (10, 13) and (1, 1); the peak is exactly 1 there
    assert np.unravel_index(heat[0].argmax(), heat[0].shape) == (13, 10) and heat[0, 13, 10] == 1.0
    assert np.unravel_index(heat[1].argmax(), heat[1].shape) == (1, 1)
    ys, xs = np.mgrid[0:32, 0:24]
    ref = np.exp(-((xs - 10.0) ** 2 + (ys - 13.0) ** 2) / 8.0) * ((abs(xs - 10) <= 6) & (abs(ys - 13) <= 6))
    np.testing.assert_allclose(heat[0], ref, rtol=1e-6, atol=1e-7)
    # the 13x13 window holds > 99% of the Gaussian's mass 2 pi sigma^2
    assert heat[0].sum() == pytest.approx(2 * math.pi * 4, rel=0.01)


def test_msra_weights_unlabelled_and_outside():
    kp = np.array([[40.0, 50.0], [40.0, 50.0], [-40.0, 50.0], [-20.0, 50.0], [200.0, 50.0]], np.float32)
    heat, w = encode_msra(kp, np.array([2, 0, 2, 2, 1]), IN_WH, HM_WH, 2.0)
    # x_hm -10 -> centre -9 (truncation), window reaches -2 < 0: outside; -5 -> -4, reaches column 2: kept
    # (y_hm 12.5 -> row 13)
    assert w.tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert heat[1].max() == 0 and heat[2].max() == 0 and heat[4].max() == 0
    assert heat[3, 13, :3].tolist() == pytest.approx([math.exp(-16 / 8), math.exp(-25 / 8), math.exp(-36 / 8)])


@pytest.mark.parametrize("input_wh,sigma", [((192, 256), 2.0), ((96, 128), 2.0), ((256, 256), 3.0)])
def test_msra_round_trip_error_is_the_quantisation(input_wh, sigma):
    rng = np.random.default_rng(0)
    hm_wh = (input_wh[0] // 4, input_wh[1] // 4)
    kp = np.stack([rng.uniform(12, input_wh[0] - 12, 300), rng.uniform(12, input_wh[1] - 12, 300)], 1)
    kp = kp.astype(np.float32)
    heat, _ = encode_msra(kp, np.ones(300), input_wh, hm_wh, sigma)
    dec, scores = decode_msra(torch.from_numpy(heat)[None], input_wh)
    dec = dec[0].numpy()
    # a noise-free target is symmetric about its rounded centre: no quarter step, the decode is
    # exactly the rounded keypoint times the stride, at most half a heatmap pixel (2 px) away
    np.testing.assert_array_equal(dec, np.trunc(kp / 4 + 0.5) * 4)
    err = np.abs(dec - kp)
    assert err.max() <= 2.0 + 1e-5 and err.max() > 1.9
    assert np.all(scores.numpy() == 1.0)
    # the card-level entry point dispatches on the codec name
    dec2, _ = decode_heatmaps(torch.from_numpy(heat)[None], input_wh, refine="quarter", codec="msra_gaussian")
    np.testing.assert_array_equal(dec2[0].numpy(), dec)
    assert msra_scale(input_wh, hm_wh).tolist() == [4.0, 4.0]


def _quarter_reference(hm: np.ndarray) -> tuple[float, float]:
    """ViTPose 0.x ``post_process='default'`` for one map, written out with loops."""
    h, w = hm.shape
    idx = int(np.argmax(hm))
    px, py = idx % w, idx // w
    x, y = float(px), float(py)
    if 1 < px < w - 1 and 1 < py < h - 1:
        x += 0.25 * float(np.sign(hm[py, px + 1] - hm[py, px - 1]))
        y += 0.25 * float(np.sign(hm[py + 1, px] - hm[py - 1, px]))
    return x, y


def test_quarter_rule_on_hand_made_heatmaps():
    h, w = 32, 24
    maps = np.zeros((7, h, w), np.float32)

    def peak(k, x, y, **nb):
        maps[k, y, x] = 1.0
        for (dx, dy), v in {(1, 0): nb.get("r", 0), (-1, 0): nb.get("l", 0),
                            (0, 1): nb.get("d", 0), (0, -1): nb.get("u", 0)}.items():
            if 0 <= x + dx < w and 0 <= y + dy < h:
                maps[k, y + dy, x + dx] = v

    peak(0, 10, 12, r=0.6, l=0.4, d=0.5, u=0.5)   # right higher: +1/4 in x, tie in y
    peak(1, 10, 12, r=0.3, l=0.7, d=0.2, u=0.6)   # left and up higher: -1/4, -1/4
    peak(2, 10, 12, d=0.9)                         # down higher: +1/4 in y only
    peak(3, 1, 12, r=0.9)                          # x = 1: on the border band, no step at all
    peak(4, 22, 12, l=0.9, u=0.9)                  # x = w - 2 is inside: -1/4, -1/4
    peak(5, 23, 12, l=0.9)                         # x = w - 1: no step
    peak(6, 10, 1, r=0.9, d=0.9)                   # y = 1: no step in x either (the joint rule)
    expected = [(10.25, 12.0), (9.75, 11.75), (10.0, 12.25), (1.0, 12.0), (21.75, 11.75), (23.0, 12.0),
                (10.0, 1.0)]
    dec, scores = decode_msra(torch.from_numpy(maps)[None], (w * 4, h * 4))
    np.testing.assert_allclose(dec[0].numpy(), np.asarray(expected) * 4)
    assert [_quarter_reference(m) for m in maps] == expected
    assert np.all(scores.numpy() == 1.0)
    # random maps against the loop reference
    rng = np.random.default_rng(3)
    rnd = rng.random((2, 17, h, w)).astype(np.float32)
    dec, _ = decode_msra(torch.from_numpy(rnd), (w * 4, h * 4), refine="quarter")
    ref = np.asarray([[_quarter_reference(m) for m in b] for b in rnd]) * 4
    np.testing.assert_allclose(dec.numpy(), ref)
    dec_none, _ = decode_msra(torch.from_numpy(rnd), (w * 4, h * 4), refine="none")
    assert np.all(np.abs(dec_none.numpy() - ref) <= 1.0 + 1e-6)
    with pytest.raises(ValueError, match="'dark' is not defined for codec 'msra_gaussian'"):
        decode_msra(torch.from_numpy(rnd), (w * 4, h * 4), refine="dark")


# --------------------------------------------------------------------------- flip test
def test_msra_flip_alignment_is_the_one_pixel_shift():
    """Mirrored back, the heatmaps of a flipped crop sit one pixel left of the original ones under
    MSRA (x_hm = x_in / 4: the mirror of pixel x is W - 1 - x, i.e. 3/4 heatmap pixel off), so the
    shift restores them exactly for integer input coordinates of every phase modulo the stride."""
    flip_index = COCO_META.flip_index()
    xs = np.array([32, 33, 34, 35, 40, 45, 50, 55, 60, 61, 62, 63, 44, 47, 49, 58, 38], np.float32)
    ys = np.arange(17, dtype=np.float32) * 5 + 20
    kp = np.stack([xs, ys, np.ones(17, np.float32)], 1)
    mirrored = flip_keypoints(kp, flip_index, IN_WH[0])
    heat, _ = encode_msra(kp[:, :2], kp[:, 2], IN_WH, HM_WH, 2.0)
    heat_m, _ = encode_msra(mirrored[:, :2], mirrored[:, 2], IN_WH, HM_WH, 2.0)
    back = flip_heatmaps(torch.from_numpy(heat_m), flip_index)
    # without the shift every map is one column left of the target
    assert not np.allclose(back.numpy(), heat)
    np.testing.assert_allclose(back.numpy()[..., :-1], heat[..., 1:], atol=1e-7)
    aligned = align_flipped(back, "msra_gaussian")
    np.testing.assert_allclose(aligned.numpy(), heat, atol=1e-7)
    dec, _ = decode_msra((0.5 * (torch.from_numpy(heat) + aligned))[None], IN_WH)
    np.testing.assert_array_equal(dec[0].numpy(), np.trunc(kp[:, :2] / 4 + 0.5) * 4)
    # UDP needs no shift; column 0 keeps its value under the MSRA shift
    assert align_flipped(back, "udp_gaussian") is back
    assert torch.equal(aligned[..., 0], back[..., 0])
    with pytest.raises(ValueError, match="unknown heatmap codec"):
        align_flipped(back, "msra")


# --------------------------------------------------------------------------- cards and adapter
def test_card_codec_options():
    for name in ("coco_wholebody_pose", "ap10k_pose", "chimpact_pose"):
        codec = adapter_options(_card(name))["codec"]
        assert (codec["type"], codec["refine"], codec["sigma"]) == ("msra_gaussian", "quarter", 2)
    for name in ("coco_pose", "humanart_pose"):  # unchanged: UDP with DARK-UDP
        codec = adapter_options(_card(name))["codec"]
        assert (codec["type"], codec["refine"]) == ("udp_gaussian", "dark")
    # each codec's default refinement when the card names none
    assert adapter_options(_card("coco_pose", codec={"type": "msra_gaussian"}))["codec"]["refine"] == "quarter"
    with pytest.raises(ValueError, match="refine 'dark' is not defined for codec 'msra_gaussian'"):
        adapter_options(_card("coco_pose", codec={"type": "msra_gaussian", "refine": "dark"}))
    with pytest.raises(ValueError, match="refine 'quarter' is not defined for codec 'udp_gaussian'"):
        adapter_options(_card("coco_pose", codec={"type": "udp_gaussian", "refine": "quarter"}))


def test_dataset_encodes_msra_targets(tmp_path):
    from PIL import Image

    from hcbench.data.types import DatasetSplit, PoseInstance

    card = _card("coco_pose", codec={"type": "msra_gaussian", "sigma": 2})
    Image.new("RGB", (192, 256)).save(tmp_path / "a.png")
    kp = np.zeros((17, 3), np.float32)
    kp[:, 0], kp[:, 1], kp[:, 2] = np.linspace(20, 170, 17), np.linspace(30, 220, 17), 2
    inst = PoseInstance(image=tmp_path / "a.png", image_id=1, bbox=np.array([0, 0, 192, 256], np.float32),
                        keypoints=kp, width=192, height=256)
    split = DatasetSplit("synth", "val", "pose", [inst], COCO_META)
    item = TopDownDataset(split, card, train=False)[0]
    # the eval crop of a box covering the image: re-encode its keypoints the MSRA way
    from hcbench.data.transforms.geometry import transform_points

    pts = transform_points(kp[:, :2].astype(np.float64), item["matrix"].numpy())
    ref, w = encode_msra(pts.astype(np.float32), kp[:, 2], (192, 256), (48, 64), 2.0)
    np.testing.assert_allclose(item["heatmaps"].numpy(), ref, atol=1e-6)
    assert item["weights"].tolist() == w.tolist()


class _MarkerModel(nn.Module):
    """Returns the MSRA targets of fixed keypoints, or of their mirror when the input is flipped
    (told apart by a marker pixel in the top-left corner)."""

    def __init__(self, heat: np.ndarray, heat_m: np.ndarray, flip_index: np.ndarray, input_wh):
        super().__init__()
        self.heat, self.heat_m = torch.from_numpy(heat), torch.from_numpy(heat_m)
        self.input_wh = input_wh
        self.register_buffer("flip_index", torch.as_tensor(flip_index, dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flipped = images[:, 0, 0, 0] == 0
        return torch.stack([self.heat_m if f else self.heat for f in flipped.tolist()])


def test_predict_with_flip_test_decodes_msra_keypoints():
    card = _card("ap10k_pose")  # msra_gaussian, 256x256, flip test
    assert card.eval.flip_test
    meta = get_dataset_card("ap10k").meta()
    flip_index = meta.flip_index()
    rng = np.random.default_rng(5)
    kp = np.concatenate([rng.integers(30, 220, (17, 2)).astype(np.float32), np.ones((17, 1), np.float32)], 1)
    heat, _ = encode_msra(kp[:, :2], kp[:, 2], (256, 256), (64, 64), 2.0)
    heat_m, _ = encode_msra(flip_keypoints(kp, flip_index, 256)[:, :2], kp[:, 2], (256, 256), (64, 64), 2.0)
    model = _MarkerModel(heat, heat_m, flip_index, (256, 256))
    images = torch.zeros(1, 3, 256, 256, dtype=torch.uint8)
    images[:, :, 0, 0] = 255
    batch = {"image": images, "matrix": torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]], dtype=torch.float64),
             "index": torch.tensor([0])}
    out = PoseAdapter().predict(model, batch, card)
    np.testing.assert_allclose(out[0]["keypoints"], np.trunc(kp[:, :2] / 4 + 0.5) * 4, atol=1e-4)
    assert np.all(out[0]["scores"] == pytest.approx(1.0))
