"""synth_pose: single-person images with COCO-17 keypoints, written as a COCO keypoint file.

Layout (format ``coco_keypoints``): ``annotations/person_keypoints_{split}.json`` and
``images/{split}/<id>.jpg``. ``bbox`` is the person's full (amodal) extent clipped to the
image, so every labelled keypoint lies inside it even when an object hides part of the body;
``area`` is the visible body area in pixels (what a COCO segmentation area measures) and
drives the OKS scale. Keypoints outside the frame are ``[0, 0, 0]`` as in COCO.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcbench.data.readers.coco import write_coco_keypoints
from hcbench.data.transforms.image import write_image
from hcbench.data.types import KeypointMeta
from hcbench.synth.body import (
    COCO_FLIP_PAIRS,
    COCO_KEYPOINTS,
    COCO_SIGMAS,
    COCO_SKELETON,
    sample_appearance,
    sample_pose,
)
from hcbench.synth.scene import clip_box, person_crop, split_rng

NAME = "synth_pose"
META = KeypointMeta(NAME, COCO_KEYPOINTS, COCO_FLIP_PAIRS, COCO_SKELETON, COCO_SIGMAS,
                    upper_body_ids=tuple(range(11)), lower_body_ids=tuple(range(11, 17)))


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) between 128 x 96 and 160 x 128, portrait like a person box."""
    h = int(rng.integers(128, 161))
    return h, int(np.clip(round(h * rng.uniform(0.68, 0.85)), 96, 128))


def write_pose(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict[str, list[dict]]:
    """Write every split; returns up to ``keep`` in-memory samples per split (for previews)."""
    root = Path(root)
    shown: dict[str, list[dict]] = {}
    for split, n in counts.items():
        rng = split_rng(seed, NAME, split)
        images, anns, shown[split] = [], [], []
        for i in range(n):
            h, w = image_size(rng)
            shot = person_crop(rng, h, w, sample_appearance(rng), sample_pose(rng), truncate_p=0.12, occlude_p=0.2)
            p = shot.people[0]
            kp = p.keypoints.astype(np.float64)
            kp[kp[:, 2] == 0] = 0.0
            kp[:, :2] = np.round(kp[:, :2], 2)
            box = [round(v, 2) for v in clip_box(p.full_box, w, h)]
            name = f"{i + 1:06d}.jpg"
            write_image(root / "images" / split / name, shot.image)
            images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
            anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, "bbox": box,
                         "area": round(p.visible_area, 2), "keypoints": kp,
                         "num_keypoints": int((kp[:, 2] > 0).sum())})
            if i < keep:
                shown[split].append({"image": shot.image, "keypoints": kp, "bbox": box})
        write_coco_keypoints(root / "annotations" / f"person_keypoints_{split}.json", images, anns, META,
                             info={"description": f"{NAME} (hcbench synthetic, seed {seed})"})
    return shown


# --------------------------------------------------------------------------- whole body
WHOLEBODY_NAME = "synth_wholebody"


def wholebody_meta() -> KeypointMeta:
    """The 133-keypoint definition of the synth_wholebody dataset card (COCO-WholeBody's)."""
    from hcbench.data.cards import get_dataset_card

    meta = get_dataset_card(WHOLEBODY_NAME).meta()
    assert isinstance(meta, KeypointMeta)
    return meta


def write_wholebody(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict[str, list[dict]]:
    """Write every split of synth_wholebody in the COCO-WholeBody v1.0 layout
    (``annotations/coco_wholebody_{split}_v1.0.json``, ``images/{split}/<id>.jpg``): the body's 17
    keypoints as synth_pose, then feet, face and hands where the figure draws them (see
    :func:`hcbench.synth.figure.wholebody_points`). Returns up to ``keep`` preview samples per split."""
    from hcbench.data.readers.wholebody import write_coco_wholebody

    root = Path(root)
    meta = wholebody_meta()
    shown: dict[str, list[dict]] = {}
    for split, n in counts.items():
        rng = split_rng(seed, WHOLEBODY_NAME, split)
        images, anns, shown[split] = [], [], []
        for i in range(n):
            h, w = image_size(rng)
            # a larger person than synth_pose's so that hands and face span a few pixels
            shot = person_crop(rng, h, w, sample_appearance(rng), sample_pose(rng), height_frac=(0.85, 0.95),
                               truncate_p=0.1, occlude_p=0.15, wholebody=True)
            p = shot.people[0]
            assert p.wholebody is not None
            kp = np.concatenate([p.keypoints, p.wholebody]).astype(np.float64)
            kp[kp[:, 2] == 0] = 0.0
            kp[:, :2] = np.round(kp[:, :2], 2)
            box = [round(v, 2) for v in clip_box(p.full_box, w, h)]
            name = f"{i + 1:06d}.jpg"
            write_image(root / "images" / split / name, shot.image)
            images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
            anns.append({"id": i + 1, "image_id": i + 1, "bbox": box, "area": round(p.visible_area, 2),
                         "keypoints": kp})
            if i < keep:
                shown[split].append({"image": shot.image, "keypoints": kp, "bbox": box})
        write_coco_wholebody(root / "annotations" / f"coco_wholebody_{split}_v1.0.json", images, anns, meta,
                             info={"description": f"{WHOLEBODY_NAME} (hcbench synthetic, seed {seed})"})
    return shown
