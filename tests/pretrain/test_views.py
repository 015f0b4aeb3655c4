"""The shared multi-view sampler: image discovery, view shapes, the pasted canvas, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from PIL import Image
from pretrain_helpers import VIEWS, write_images

from hcbench.data.types import DataFormatError
from hcbench.engine.loops import seed_everything
from hcbench.pretrain.views import (
    MultiViewDataset,
    ViewConfig,
    collate_views,
    list_images,
    paste_boxes,
    rescale,
    rescaled_size,
    resize,
)


def test_list_images_is_recursive_sorted_and_filters(tmp_path):
    write_images(tmp_path, 5)
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "nested" / "UPPER.PNG").write_bytes(next(tmp_path.rglob("*.png")).read_bytes())
    files = list_images(tmp_path)
    assert len(files) == 6 and files == sorted(files)
    assert {f.suffix.lower() for f in files} <= {".png", ".jpg"}
    assert any(f.parent.name == "nested" for f in files)


def test_list_images_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no \.jpg"):
        list_images(tmp_path / "empty")


def test_views_shapes_ranges_and_preset_sizes(images):
    seed_everything(0)
    ds = MultiViewDataset(list_images(images), VIEWS)
    b = collate_views([ds[i] for i in range(4)])
    assert b.globals.shape == (4, 2, 3, 64, 32)
    assert b.locals.shape == (4, 2, 3, 32, 32)
    assert b.canvas.shape == (4, 3, 64, 64) and b.canvas_masks.shape == (4, 2, 64, 64)
    assert b.canvas_boxes.shape == (4, 2, 4) and b.canvas_synthetic.all()
    assert b.index.tolist() == [0, 1, 2, 3]
    for t in (b.globals, b.locals, b.canvas):
        assert t.dtype == torch.float32 and t.min() >= 0 and t.max() <= 1
    assert ViewConfig.preset("full").global_size == (256, 128) and ViewConfig.preset("full").local_size == (128, 96)
    assert ViewConfig.preset("full").canvas_size == (256, 256)
    assert ViewConfig.preset("small").global_size == (128, 64)
    with pytest.raises(ValueError, match="unknown view preset"):
        ViewConfig.preset("huge")


def test_canvas_pastes_instance_and_part_at_alpha_with_exact_masks(tmp_path, images):
    # a black background stays black under every photometric op, so the canvas is exactly
    # alpha * person inside the pasted boxes and 0 elsewhere
    bg = tmp_path / "bg.png"
    Image.new("RGB", (80, 80)).save(bg)
    ds = MultiViewDataset(list_images(images), VIEWS, backgrounds=[bg])
    for seed in range(3):
        seed_everything(seed)
        s = ds[seed]
        persons = [resize(s["globals"][0], VIEWS.local_size), s["locals"][-1]]
        union = s["canvas_masks"].sum(0) > 0
        assert torch.all(s["canvas"][:, ~union] == 0)
        for k in range(2):
            x0, y0, x1, y1 = (int(v) for v in s["canvas_boxes"][k])
            assert (y1 - y0, x1 - x0) == VIEWS.local_size
            assert s["canvas_masks"][k].sum() == (y1 - y0) * (x1 - x0)  # side by side: nothing hidden
            assert torch.allclose(s["canvas"][:, y0:y1, x0:x1], 0.7 * persons[k], atol=1e-6)
        assert not torch.any((s["canvas_masks"][0] > 0) & (s["canvas_masks"][1] > 0))


def test_overlapping_paste_masks_hold_only_the_visible_part():
    narrow = (64, 40)  # too narrow for two 32-wide boxes side by side
    import random

    random.seed(3)
    boxes = [paste_boxes(narrow, (32, 32)) for _ in range(50)]
    assert all(0 <= x0 < x1 <= 40 and 0 <= y0 < y1 <= 64 for bb in boxes for x0, y0, x1, y1 in bb)
    wide = [paste_boxes((64, 64), (32, 32)) for _ in range(50)]
    for (a, b) in wide:  # never overlap when they fit side by side
        assert a[2] <= b[0] or b[2] <= a[0]
    with pytest.raises(ValueError, match="does not fit"):
        paste_boxes((16, 16), (32, 32))


def test_real_multi_person_images_replace_the_canvas(tmp_path, images):
    crowd = write_images(tmp_path / "crowd", 2, seed=5, size=(70, 90))
    cfg = dataclasses.replace(VIEWS, real_canvas_prob=1.0)
    ds = MultiViewDataset(list_images(images), cfg, multi_person=list_images(crowd))
    seed_everything(0)
    s = ds[0]
    assert not bool(s["canvas_synthetic"]) and s["canvas_masks"].sum() == 0
    assert s["canvas"].shape == (3, 64, 64)


def test_same_seed_same_views(images):
    ds = MultiViewDataset(list_images(images), VIEWS)
    seed_everything(11)
    a = ds[2]
    seed_everything(11)
    b = ds[2]
    seed_everything(12)
    c = ds[2]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["globals"], c["globals"])


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "imgs" / "broken.jpg"
    bad.parent.mkdir()
    bad.write_bytes(b"not a jpeg")
    ds = MultiViewDataset(list_images(bad.parent), VIEWS)
    with pytest.raises(DataFormatError, match="broken.jpg: cannot decode image"):
        ds[0]


def test_rescaled_crops_stay_patch_aligned():
    assert rescaled_size((64, 48), 0.75, 16) == (48, 32)  # 36 -> 32
    assert rescaled_size((128, 96), 1.25, 16) == (160, 128)  # 120 -> 128
    assert rescaled_size((16, 16), 0.5, 16) == (16, 16)  # at least one patch
    x = torch.rand(2, 3, 64, 48)
    assert rescale(x, 1.125, 16).shape == (2, 3, 64, 48)
    assert rescale(x, 1.25, 16).shape == (2, 3, 80, 64)
