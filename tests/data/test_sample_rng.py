"""Per-sample augmentation generators: the engine gives every training item its own numpy
generator seeded by (seed, epoch, index) instead of re-seeding torch's global RNG per item.
Same (seed, epoch, index) -> the same augmentation; another index or epoch -> another one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcbench.adapters.parsing import ParsingDataset
from hcbench.adapters.pose import TopDownDataset
from hcbench.adapters.reid import ReIDDataset, image_transform
from hcbench.cards import get_card, resolve
from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.coco import read_coco_keypoints
from hcbench.data.rng import sample_rng
from hcbench.data.types import DatasetSplit, ParsingSample, ReIDSample
from hcbench.engine.loops import SeededDataset


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_sample_rng_is_a_function_of_seed_epoch_index():
    a = sample_rng(7, 2, 11).random(8)
    assert np.array_equal(a, sample_rng(7, 2, 11).random(8))
    for other in [(7, 2, 12), (7, 3, 11), (8, 2, 11)]:
        assert not np.array_equal(a, sample_rng(*other).random(8)), other


def _same(x, y) -> bool:
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if torch.is_tensor(x):
        return torch.equal(x, y)
    return x == y


def _pose(real: Path, copies: int) -> TopDownDataset:
    root = real / "coco"
    split = read_coco_keypoints(root / "test_coco.json", root, get_dataset_card("coco").meta(), name="coco",
                                split="train2017")
    first = next(s for s in split.samples if (s.keypoints[:, 2] > 0).sum() >= 10)
    split.samples = [first] * copies  # one person, replicated: any difference is augmentation
    return TopDownDataset(split, resolve(get_card("coco_pose"), "full"), train=True)


def _parsing(tmp: Path, copies: int) -> ParsingDataset:
    meta = get_dataset_card("lip").meta()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (60, 50, 3), dtype=np.uint8)).save(tmp / "a.png")
    Image.fromarray(rng.integers(0, meta.num_classes, (60, 50), dtype=np.uint8), mode="L").save(tmp / "a_l.png")
    split = DatasetSplit("lip", "train", "parsing", [ParsingSample(tmp / "a.png", tmp / "a_l.png", "a")] * copies,
                         meta)
    card = resolve(get_card("lip_parsing"), "full")
    card = card.model_copy(update={"input": card.input.model_copy(update={"height": 48, "width": 40})})
    return ParsingDataset(split, card, train=True)


def _reid(tmp: Path, copies: int) -> ReIDDataset:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 40, 3), dtype=np.uint8)).save(tmp / "p.png")
    split = DatasetSplit("market1501", "train", "reid", [ReIDSample(tmp / "p.png", 1, 0, "train")] * copies, None)
    return ReIDDataset(split, image_transform((64, 32), True), [0] * copies)


@pytest.mark.parametrize("family", ["pose", "parsing", "reid"])
def test_engine_items_repeat_per_seed_epoch_index_and_differ_across_them(family, real_samples, tmp_path):
    base = {"pose": lambda: _pose(real_samples, 6), "parsing": lambda: _parsing(tmp_path, 6),
            "reid": lambda: _reid(tmp_path, 6)}[family]()
    assert callable(getattr(base, "seeded_item", None))
    data = SeededDataset(base, seed=5)
    data.epoch = 1
    first = [data[i] for i in range(6)]
    torch.manual_seed(123)  # the global RNG plays no part
    assert all(_same(first[i], data[i]) for i in range(6))
    # the six replicas of one sample: different indices draw different augmentations
    key = {"pose": "matrix", "parsing": "image", "reid": "image"}[family]
    distinct = {first[i][key].numpy().tobytes() for i in range(6)}
    assert len(distinct) >= 4
    data.epoch = 2
    assert sum(not _same(first[i], data[i]) for i in range(6)) >= 4
    # and the same generator state gives the same item outside the engine too
    assert _same(base.seeded_item(3, sample_rng(5, 1, 3)), first[3])


def test_datasets_outside_the_engine_follow_torch_seed(real_samples):
    ds = _pose(real_samples, 2)
    torch.manual_seed(9)
    a = ds[0]
    torch.manual_seed(9)
    assert _same(a, ds[0])


def test_engine_seeds_torch_cpu_rng_for_datasets_without_seeded_item():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.randn(3), float(np.random.random())

    data = SeededDataset(Noise(), seed=1)
    a = [data[i] for i in range(4)]
    torch.manual_seed(0)
    np.random.seed(0)
    b = [data[i] for i in range(4)]
    assert all(torch.equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0][0], a[1][0])


def test_pose_augmentation_statistics_are_the_protocol_s(real_samples):
    """Flip 0.5, rotation with p 0.6 of clip(N(0, 1) x 40, -80, 80), scale mid + half x clip(N(0,1)):
    the per-sample generators draw from the same distributions the global seed did."""
    ds = _pose(real_samples, 1)
    tf = ds.transform
    inst = ds.split.samples[0]
    img = np.zeros((inst.height, inst.width, 3), np.uint8)
    n = 600
    crops = [tf(inst, image=img, rng=sample_rng(0, 0, i)) for i in range(n)]
    flips = np.mean([c.flipped for c in crops])
    rots = np.array([c.rotation for c in crops])
    assert abs(flips - 0.5) < 4 * np.sqrt(0.25 / n)
    assert abs(np.mean(rots != 0) - 0.6) < 4 * np.sqrt(0.24 / n)
    nz = rots[rots != 0]
    assert np.abs(nz).max() <= 80 and abs(nz.std() - 40) < 6
    hb = np.mean([c.half_body is not None for c in crops])
    assert 0.15 < hb < 0.35  # half-body p 0.3 when enough keypoints are labelled


def test_reid_augmentation_statistics(tmp_path):
    ds = _reid(tmp_path, 1)
    tf = ds.transform
    img = np.full((90, 40, 3), 255, np.uint8)
    n = 800
    out = torch.stack([tf(img, rng=sample_rng(0, 0, i)) for i in range(n)])
    mean = torch.tensor(tf.mean)[:, None, None]
    erased = ((out - mean).abs() < 1e-6).all(1)  # erased pixels hold the mean exactly
    erased_frac = erased.flatten(1).float().mean(1)
    hit = erased_frac > 0
    assert abs(hit.float().mean().item() - 0.5) < 4 * np.sqrt(0.25 / n)
    assert 0.015 < erased_frac[hit].min().item() and erased_frac[hit].max().item() < 0.45
    # pad 10 + crop: a black (padded) border shows on a side in most draws, never wider than 10 px
    black = (out == 0).all(1)
    left = black[:, :, 0].all(1)
    assert 0.3 < left.float().mean().item() < 0.7
    assert not black[:, 11:-11, 11:-11].any()
