"""synth_reid: identities seen by several cameras, written in the Market-1501 layout.

An identity is one fixed :class:`Appearance` (clothing colours and shade, stripes, sleeves,
lower garment, hair, accessories, body build). A camera is a fixed background style, light,
typical scale, preferred viewpoints and resolution; every image also draws its own pose,
view, crop jitter and lighting. Train and test identities are disjoint; each test identity
has queries in two cameras and gallery images in all of its 3-4 cameras, so every query has a
cross-camera match. The gallery also holds distractors (pid 0000, people never queried) and a
few junk crops (pid -1: background or a body fragment), named as in Market-1501.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcbench.data.readers.reid import market_name, write_market1501
from hcbench.synth.background import Style, sample_style
from hcbench.synth.body import VIEWS, Appearance, sample_appearance, sample_pose
from hcbench.synth.scene import empty_crop, person_crop, split_rng

NAME = "synth_reid"
NUM_CAMERAS = 6
H, W = 128, 64


@dataclass
class Camera:
    style: Style
    views: np.ndarray  # probabilities of front/back/side
    scale: tuple[float, float]  # person height as a fraction of the crop
    quality: float  # < 1: a lower-resolution sensor


def sample_cameras(rng: np.random.Generator, n: int = NUM_CAMERAS) -> list[Camera]:
    cams = []
    for _ in range(n):
        lo = float(rng.uniform(0.74, 0.86))
        cams.append(Camera(sample_style(rng), rng.dirichlet([2.0, 2.0, 2.0]), (lo, lo + 0.1),
                           float(rng.choice([1.0, 0.8, 0.65]))))
    return cams


def _shot(rng: np.random.Generator, app: Appearance, cam: Camera) -> np.ndarray:
    view = VIEWS[int(rng.choice(3, p=cam.views))]
    pose = sample_pose(rng, view=view, kind=str(rng.choice(["walk", "walk", "stand"])))
    return person_crop(rng, H, W, app, pose, style=cam.style, height_frac=cam.scale, x_jitter=0.05,
                       quality=cam.quality, light_jitter=0.12, measure=False).image


def _junk(rng: np.random.Generator, cam: Camera) -> np.ndarray:
    if rng.random() < 0.5:
        return empty_crop(rng, H, W, cam.style)
    # a bad detection: a box on part of a body
    pose = sample_pose(rng)
    return person_crop(rng, H, W, sample_appearance(rng), pose, style=cam.style, height_frac=(1.8, 2.6),
                       x_jitter=0.3, fit_width=False, measure=False).image


def write_reid(root: Path, n_train_ids: int, imgs_per_id: int, n_test_ids: int, seed: int,
               keep: int = 0) -> dict:
    """Write the three folders; returns ``records`` (name, pid, camid 0-based, role per image),
    the cameras of each test id, and up to ``keep`` identities' images for previews."""
    root = Path(root)
    rng = split_rng(seed, NAME, "all")
    cams = sample_cameras(rng)
    n_ids = n_train_ids + n_test_ids
    if n_ids * 3 > 9999:
        raise ValueError(f"{n_ids} identities do not fit Market-1501's 4-digit pids")
    pids = rng.permutation(np.arange(1, min(9999, 10 * n_ids) + 1))[:n_ids]
    train_pids, test_pids = sorted(pids[:n_train_ids].tolist()), sorted(pids[n_train_ids:].tolist())
    records: list[dict] = []
    shown: dict[int, list[tuple[np.ndarray, int]]] = {}
    test_cams: dict[int, list[int]] = {}

    def item(image: np.ndarray, pid: int, cam: int, role: str) -> tuple[np.ndarray, int, int, str]:
        records.append({"name": market_name(pid, cam, frame=len(records)), "pid": pid, "camid": cam, "role": role})
        if len(shown) < keep or pid in shown:
            if pid > 0:
                shown.setdefault(pid, []).append((image, cam))
        return image, pid, cam, role

    def items() -> Iterator[tuple[np.ndarray, int, int, str]]:
        for pid in train_pids:
            app = sample_appearance(rng)
            ids_cams = rng.choice(NUM_CAMERAS, size=int(rng.integers(3, 5)), replace=False)
            for k in range(imgs_per_id):  # round-robin: every chosen camera sees the identity
                c = int(ids_cams[k % len(ids_cams)])
                yield item(_shot(rng, app, cams[c]), pid, c, "train")
        for pid in test_pids:
            app = sample_appearance(rng)
            ids_cams = [int(c) for c in rng.choice(NUM_CAMERAS, size=int(rng.integers(3, 5)), replace=False)]
            test_cams[pid] = ids_cams
            for c in ids_cams[:2]:
                yield item(_shot(rng, app, cams[c]), pid, c, "query")
            for c in ids_cams:
                for _ in range(2):
                    yield item(_shot(rng, app, cams[c]), pid, c, "gallery")
        for _ in range(max(n_test_ids // 2, 4)):  # distractors: people nobody looks for
            c = int(rng.integers(NUM_CAMERAS))
            yield item(_shot(rng, sample_appearance(rng), cams[c]), 0, c, "gallery")
        for _ in range(max(n_test_ids // 6, 3)):
            c = int(rng.integers(NUM_CAMERAS))
            yield item(_junk(rng, cams[c]), -1, c, "gallery")

    write_market1501(root, items())
    return {"records": records, "test_cams": test_cams, "shown": shown}
