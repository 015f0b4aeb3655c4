"""synth_fashion through `hcbench data synth`: registered by its family, deterministic, previewed."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from hcbench.synth import write_suite
from hcbench.synth.fashion import ATTRIBUTES, fashion_image
from hcbench.synth.scene import split_rng


def test_written_by_the_suite_deterministic_with_preview(tmp_path):
    a = write_suite(tmp_path / "a", "smoke", seed=4, preview=tmp_path / "prev", datasets=["synth_fashion"],
                    fraction=0.03)["synth_fashion"]
    b = write_suite(tmp_path / "b", "smoke", seed=4, datasets=["synth_fashion"], fraction=0.03)["synth_fashion"]
    for name in ("instances_attributes_train2020.json", "instances_attributes_val2020.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    facts = json.loads((a / "synth.json").read_text())
    assert facts["counts"] == {"train": 6, "val": 2} and facts["instances"]["top, t-shirt, sweatshirt"] == 8
    sheet = Image.open(tmp_path / "prev" / "synth_fashion_train.png")
    assert sheet.width > 400 and sheet.height > 250  # image + mask overlay, captions below


def test_garments_are_disjoint_visible_masks_with_true_colours():
    rng = split_rng(0, "synth_fashion", "test")
    for _ in range(5):
        img, garments = fashion_image(rng, 140, 104)
        stack = np.stack([g["mask"] for g in garments])
        assert stack.sum(0).max() == 1  # each pixel shows at most one garment
        top = garments[0]
        assert top["category_id"] == 1
        colour = next(a for a in top["attributes"] if a in ATTRIBUTES[:12])
        mean = img[top["mask"].astype(bool)].astype(float).mean(0)
        # the named colour is drawn (shaded, outlined, maybe striped): the top's mean pixel is nearer
        # to it than to most other named colours
        from hcbench.synth.body import COLORS

        d = {n: np.linalg.norm(mean - np.array(c)) for n, c in COLORS.items()}
        assert sorted(d, key=d.get).index(colour) < 6, (colour, mean)
