"""synth_det: multi-person street/room scenes in the CrowdHuman layout (``annotation_{split}.odgt``).

People stand on a ground plane (lower in the image = nearer = taller), drawn far to near so
nearer people occlude farther ones; about half are placed next to someone already there, so
overlaps are common. Per person: ``fbox`` = the full body extent including occluded parts and
parts outside the image (as in CrowdHuman), ``vbox`` = the extent of its visible pixels,
``hbox`` = the head (hair, face, hat). Ignore regions (``mask`` boxes): a distant crowd of tiny
people, a single tiny person, and the visible part of people too hidden to detect (under 10%
or 40 px visible).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcbench.data.readers.detection import crowdhuman_record, write_odgt
from hcbench.data.transforms.image import write_image
from hcbench.data.types import DetectionSample
from hcbench.synth.background import background, light_field, sample_style
from hcbench.synth.body import sample_appearance, sample_pose
from hcbench.synth.canvas import Canvas
from hcbench.synth.figure import build_figure
from hcbench.synth.scene import split_rng

NAME = "synth_det"
MIN_VISIBLE_FRAC, MIN_VISIBLE_PX = 0.10, 40.0
SS = 1  # scenes are 256-320 px: no supersampling needed, and it halves the generation time


def _int_box(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Integer pixel box [x, y, w, h] covering [x0, x1] x [y0, y1], as CrowdHuman stores them."""
    a, b = np.floor([x0, y0]), np.ceil([x1, y1])
    return np.array([a[0], a[1], b[0] - a[0], b[1] - a[1]], np.float32)


def _xyxy_box(b: np.ndarray) -> np.ndarray:
    return _int_box(b[0], b[1], b[0] + b[2], b[1] + b[3])


def _clip(b: np.ndarray, w: int, h: int) -> np.ndarray:
    x0, y0 = max(b[0], 0), max(b[1], 0)
    x1, y1 = min(b[0] + b[2], w), min(b[1] + b[3], h)
    return np.array([x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)], np.float32)


def det_scene(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, DetectionSample, dict]:
    """One scene: (image, annotations as a DetectionSample, extra facts for tests/previews)."""
    style = sample_style(rng, str(rng.choice(["room", "street", "street", "gradient", "noise"])))
    hz = style.horizon * h * rng.uniform(0.6, 0.9)  # people's vanishing line, near the drawn horizon
    canvas = Canvas(h, w, SS)
    roles: list[str] = []
    ignore: list[np.ndarray] = []

    def add(fig, role: str) -> None:
        canvas.add_figure(fig)
        roles.append(role)

    def small_person(x: float, feet: float, height: float):
        pose = sample_pose(rng, kind=str(rng.choice(["stand", "walk"])))
        return build_figure(sample_appearance(rng), pose).fit([x, feet - height, x, feet])

    if rng.random() < 0.3:  # a distant crowd: one ignore region over many tiny people
        cx, cy = rng.uniform(0.15, 0.85) * w, hz + rng.uniform(0.0, 0.08) * h
        figs = [small_person(cx + rng.normal(0, 12), cy + rng.uniform(-4, 4), rng.uniform(9, 17))
                for _ in range(int(rng.integers(4, 9)))]
        for f in sorted(figs, key=lambda f: f.extent()[3]):
            add(f, "crowd")
        e = np.array([f.extent() for f in figs])
        box = _clip(_int_box(e[:, 0].min() - 1, e[:, 1].min() - 1, e[:, 2].max() + 1, e[:, 3].max() + 1), w, h)
        if box[2] > 0 and box[3] > 0:
            ignore.append(box)
    if rng.random() < 0.3:  # a lone tiny person: too small to annotate, ignored
        f = small_person(rng.uniform(0.05, 0.95) * w, hz + rng.uniform(0.0, 0.1) * h, rng.uniform(10, 18))
        add(f, "tiny")
    people = []
    for _ in range(int(rng.integers(1, 9))):
        feet = rng.uniform(hz + 0.15 * (h - hz), h * 1.08)
        height = float(np.clip(rng.uniform(1.2, 1.7) * (feet - hz), 28, 0.9 * h))
        if people and rng.random() < 0.5:  # next to someone: overlaps and occlusion
            o = people[int(rng.integers(len(people)))]
            x = o[1] + rng.normal(0, 0.35) * o[2]
        else:
            x = rng.uniform(0.0, 1.0) * w
        people.append((feet, x, height))
    for feet, x, height in sorted(people):  # far (small feet y) first
        pose = sample_pose(rng)
        add(build_figure(sample_appearance(rng), pose).fit([x, feet - height, x, feet]), "person")

    img, _ = canvas.render(background(rng, h, w, style), light_field(rng, h, w, style), float(rng.uniform(1, 5)), rng)
    renders = canvas.measure(full_area={k for k, r in enumerate(roles) if r == "person"}, keypoints=False)
    boxes, visible, heads = [], [], []
    n_hidden = n_dropped = 0
    for role, r in zip(roles, renders, strict=True):
        fbox = _xyxy_box(r.full_box)
        if role == "tiny":
            box = _clip(fbox, w, h)
            if r.visible_area > 0 and box[2] > 0 and box[3] > 0:
                ignore.append(box)
            continue
        if role != "person":
            continue
        frac = r.visible_area / max(r.full_area, 1e-6)
        if r.visible_area <= 0:
            n_dropped += 1  # nothing of it is in the picture: not annotated at all
            continue
        if frac < MIN_VISIBLE_FRAC or r.visible_area < MIN_VISIBLE_PX:
            ignore.append(_xyxy_box(r.visible_box))  # only the bit that shows, not the people in front
            n_hidden += 1
            continue
        boxes.append(fbox)
        visible.append(_xyxy_box(r.visible_box))
        heads.append(_xyxy_box(r.head_box))
    arr = lambda rows: np.asarray(rows, np.float32).reshape(-1, 4)  # noqa: E731
    sample = DetectionSample(Path(), "", arr(boxes), arr(visible), arr(ignore), heads=arr(heads), width=w, height=h)
    return img, sample, {"hidden": n_hidden, "dropped": n_dropped, "renders": renders, "roles": roles}


def write_detection(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict[str, list[dict]]:
    root = Path(root)
    shown: dict[str, list[dict]] = {}
    for split, n in counts.items():
        rng = split_rng(seed, NAME, split)
        shown[split] = []
        records = []
        for i in range(n):
            h, w = int(rng.integers(256, 321)), int(rng.integers(256, 321))
            img, sample, _ = det_scene(rng, h, w)
            # CrowdHuman IDs look like "273271,c9db000d5146c15"
            sample.image_id = f"{_image_number(split, i)},{int(rng.integers(16**12)):012x}"
            write_image(root / "Images" / f"{sample.image_id}.jpg", img)
            records.append(crowdhuman_record(sample))
            if i < keep:
                shown[split].append({"image": img, "sample": sample})
        write_odgt(root / f"annotation_{split}.odgt", records)
    return shown


def _image_number(split: str, i: int) -> int:
    """Distinct 6-digit prefixes per split: train and val share the ``Images/`` folder."""
    return {"train": 100000, "val": 600000}.get(split, 800000) + i + 1
