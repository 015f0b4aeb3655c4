"""synth_parsing: single-person images with LIP part labels (format ``lip``).

Layout: ``{split}_images/<id>.jpg``, ``{split}_segmentations/<id>.png`` (class ids 0..19),
``{split}_id.txt``. The label map is a lookup on the same piece raster as the pixels, so
every boundary in the PNG is a boundary in the image. Bags and foreground objects are
background (0), as LIP has no class for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from hcbench.data.readers.parsing import write_lip
from hcbench.synth.body import sample_appearance, sample_pose
from hcbench.synth.pose import image_size
from hcbench.synth.scene import person_crop, split_rng

NAME = "synth_parsing"
LIP_CLASSES = ("Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks",
               "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg",
               "Right-leg", "Left-shoe", "Right-shoe")
LIP_FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))


def write_parsing(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict[str, list[dict]]:
    root = Path(root)
    shown: dict[str, list[dict]] = {}
    for split, n in counts.items():
        rng = split_rng(seed, NAME, split)
        shown[split] = []

        def items(rng=rng, n=n, split=split) -> Iterator[tuple[np.ndarray, np.ndarray, str]]:
            for i in range(n):
                h, w = image_size(rng)
                shot = person_crop(rng, h, w, sample_appearance(rng), sample_pose(rng), truncate_p=0.08,
                                   occlude_p=0.15, measure=False)
                if i < keep:
                    shown[split].append({"image": shot.image, "labels": shot.labels})
                yield shot.image, shot.labels, f"{i + 1:06d}"

        write_lip(root, split, items())  # consumed once, in order: no need to hold the split in memory
    return shown
