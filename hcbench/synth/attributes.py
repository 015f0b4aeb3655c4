"""synth_attr: pedestrian crops with binary attributes, written as a PA-100K ``annotation.mat``.

Each label is read off the rendered image, not the recipe: an accessory counts only when
at least ``MIN_PIXELS`` of it are visible (a hand bag hidden behind the body in a side view is
a 0), the viewpoint is the category the yaw was drawn from (+-25 deg inside it), "Female" is the
drawn silhouette (narrow shoulders, wide hips, mostly long hair; disjoint ranges from the male
build), colours are the garment's named colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcbench.data.readers.attributes import write_pa100k_mat
from hcbench.data.transforms.image import write_image
from hcbench.synth.body import DARK_COLORS, Appearance, Pose, sample_appearance, sample_pose
from hcbench.synth.canvas import PersonRender
from hcbench.synth.scene import person_crop, split_rng

NAME = "synth_attr"
ATTRIBUTES: tuple[str, ...] = (
    "Female", "Front", "Side", "Back", "Hat", "HandBag", "Backpack", "ShortSleeve", "LongSleeve", "UpperStride",
    "Trousers", "Shorts", "Skirt&Dress", "UpperRed", "UpperBlue", "LowerDark",
)
MIN_PIXELS = 20.0  # visible pixels that make an accessory count


def attribute_labels(app: Appearance, pose: Pose, person: PersonRender) -> np.ndarray:
    parts = person.part_pixels

    def seen(*names: str) -> bool:
        return sum(parts.get(n, 0.0) for n in names) >= MIN_PIXELS

    value = {
        "Female": app.female, "Front": pose.view == "front", "Side": pose.view == "side", "Back": pose.view == "back",
        "Hat": app.hat is not None and seen("hat"), "HandBag": app.bag is not None and seen("bag"),
        "Backpack": app.backpack is not None and seen("backpack", "strap"),
        "ShortSleeve": app.sleeves == "short", "LongSleeve": app.sleeves == "long",
        "UpperStride": app.upper_stripes is not None,
        "Trousers": app.lower_kind == "trousers", "Shorts": app.lower_kind == "shorts",
        "Skirt&Dress": app.lower_kind == "skirt",
        "UpperRed": app.upper == "red", "UpperBlue": app.upper == "blue", "LowerDark": app.lower in DARK_COLORS,
    }
    return np.array([value[a] for a in ATTRIBUTES], np.uint8)


def _appearance(rng: np.random.Generator) -> Appearance:
    app = sample_appearance(rng)
    r = rng.random()  # lift the two colour attributes from 1/12 to ~1/4 each: learnable, still imbalanced
    forced = "red" if r < 0.18 else "blue" if r < 0.36 else None
    if forced and app.lower != forced:
        app.upper = forced
        if app.upper_stripes == forced:
            app.upper_stripes = None
    return app


def write_attributes(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict:
    """Write ``data/*.jpg`` and ``annotation.mat``; returns names, labels, row indices per split and
    up to ``keep`` preview samples per split."""
    root = Path(root)
    names: list[str] = []
    labels: list[np.ndarray] = []
    rows: dict[str, list[int]] = {}
    shown: dict[str, list[dict]] = {}
    for split, n in counts.items():
        rng = split_rng(seed, NAME, split)
        rows[split], shown[split] = [], []
        for i in range(n):
            h = int(rng.integers(120, 145))
            w = int(round(h * rng.uniform(0.42, 0.55)))
            app, pose = _appearance(rng), sample_pose(rng)
            shot = person_crop(rng, h, w, app, pose, height_frac=(0.8, 0.93), x_jitter=0.05)
            lab = attribute_labels(app, pose, shot.people[0])
            name = f"{len(names) + 1:06d}.jpg"
            write_image(root / "data" / name, shot.image)
            rows[split].append(len(names))
            names.append(name)
            labels.append(lab)
            if i < keep:
                shown[split].append({"image": shot.image, "labels": lab})
    lab_arr = np.stack(labels) if labels else np.zeros((0, len(ATTRIBUTES)), np.uint8)
    write_pa100k_mat(root, names, lab_arr, ATTRIBUTES, rows)
    _fixed_mat_header(root / "annotation.mat")
    return {"names": names, "labels": lab_arr, "rows": rows, "shown": shown}


def _fixed_mat_header(path: Path) -> None:
    """scipy.io.savemat puts the wall-clock time into the 116-byte text of the MAT v5 header;
    overwrite that text (only) so the same seed gives byte-identical files."""
    data = bytearray(path.read_bytes())
    text = b"MATLAB 5.0 MAT-file, written by hcbench.synth"
    if data[:10] == b"MATLAB 5.0":
        data[:116] = text.ljust(116, b" ")
        path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- zero-shot split
ZS_NAME = "synth_attr_zs"
ZS_SPLIT_FILE = "dataset_zs_run0.pkl"


def write_attributes_zs(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> dict:
    """synth_attr_zs: several crops per identity (one appearance, new pose and view each time),
    identities disjoint across train / val / test as in the PETA-zs / RAP-zs protocol, written as a
    Rethinking-of-PAR dataset pickle (``dataset_zs_run0.pkl``, format ``par_pickle``) with the
    images in ``images/``. ``counts``: ``train_ids``, ``val_ids``, ``test_ids``, ``imgs_per_id``.
    Labels are read off each rendered image (an accessory hidden in one view is a 0 there)."""
    from hcbench.data.readers.par_pickle import write_par_pickle

    root = Path(root)
    names: list[str] = []
    labels: list[np.ndarray] = []
    pids: list[int] = []
    partition: dict[str, list[int]] = {}
    shown: dict[str, list[dict]] = {}
    pid = 0
    for split in ("train", "val", "test"):
        rng = split_rng(seed, ZS_NAME, split)
        partition[split], shown[split] = [], []
        for _ in range(int(counts[f"{split}_ids"])):
            app = _appearance(rng)
            for _ in range(int(counts["imgs_per_id"])):
                h = int(rng.integers(120, 145))
                w = int(round(h * rng.uniform(0.42, 0.55)))
                pose = sample_pose(rng)
                shot = person_crop(rng, h, w, app, pose, height_frac=(0.8, 0.93), x_jitter=0.05)
                lab = attribute_labels(app, pose, shot.people[0])
                name = f"{len(names) + 1:06d}.jpg"
                write_image(root / "images" / name, shot.image)
                partition[split].append(len(names))
                names.append(name)
                labels.append(lab)
                pids.append(pid)
                if len(shown[split]) < keep:
                    shown[split].append({"image": shot.image, "labels": lab})
            pid += 1
    lab_arr = np.stack(labels) if labels else np.zeros((0, len(ATTRIBUTES)), np.uint8)
    write_par_pickle(root / ZS_SPLIT_FILE, names, lab_arr, ATTRIBUTES, partition, eval_idx=range(len(ATTRIBUTES)))
    return {"names": names, "labels": lab_arr, "pids": np.asarray(pids), "partition": partition, "shown": shown}
