"""synth_fashion: one dressed person per image, each garment an instance mask with its true attributes,
written in the Fashionpedia layout (``instances_attributes_{train,val}2020.json`` + ``train/``, ``test/``).

Garments are the synthetic figure's own pieces (:mod:`hcbench.synth.figure`), grouped per garment;
a garment's mask is the set of pixels where one of its pieces is the visible (front-most) piece, a
lookup on the same piece raster as the image, so masks and pixels never disagree. Categories keep
Fashionpedia's ids and names:

=====================  ===  =============================================================
category               id   pieces
=====================  ===  =============================================================
top, t-shirt, ...       1   torso and sleeves (class UpperClothes)
pants                   6   trouser legs and seat
shorts                  7   short legs and seat
skirt                   8   the skirt
hat                    14   dome and brim
shoe                   23   one instance per shoe
bag, wallet            24   hand bag, or backpack with its straps
=====================  ===  =============================================================

Attributes (a multi-hot over :data:`ATTRIBUTES`, learnable from pixels): the colour name of the
top, the trousers/shorts/skirt, the hat and the bag; the top's sleeve length and pattern (plain /
stripe); the skirt's length. Shoes have none, as Fashionpedia's shoes: the shoe category is
scored without the attribute-F1 constraint (:data:`ATTRIBUTE_CATEGORIES`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hcbench.data.readers.fashionpedia import encode_mask, write_fashionpedia
from hcbench.data.transforms.image import write_image
from hcbench.synth.background import background, light_field, sample_style
from hcbench.synth.body import COLORS, sample_appearance, sample_pose
from hcbench.synth.canvas import Canvas
from hcbench.synth.figure import PANTS, SKIRT, UPPER, build_figure
from hcbench.synth.scene import split_rng

NAME = "synth_fashion"
SS = 2
MIN_PIXELS = 6  # a garment showing fewer pixels is not annotated (mostly shoes seen edge-on)

CATEGORIES: tuple[tuple[int, str, str], ...] = (
    (1, "top, t-shirt, sweatshirt", "upperbody"), (6, "pants", "lowerbody"), (7, "shorts", "lowerbody"),
    (8, "skirt", "lowerbody"), (14, "hat", "head"), (23, "shoe", "legs and feet"), (24, "bag, wallet", "others"),
)
CATEGORY_NAMES = tuple(c[1] for c in CATEGORIES)
ATTRIBUTE_CATEGORIES: tuple[int, ...] = (1, 6, 7, 8, 14, 24)
_SLEEVES = ("long sleeve", "short sleeve")
_PATTERNS = ("plain (pattern)", "stripe")
_LENGTHS = ("above-the-knee (length)", "below the knee (length)")
ATTRIBUTES: tuple[str, ...] = (*COLORS, *_SLEEVES, *_PATTERNS, *_LENGTHS)
_SUPER = {**{c: "colour" for c in COLORS}, **{s: "length" for s in (*_SLEEVES, *_LENGTHS)},
          **{p: "textile pattern" for p in _PATTERNS}}
ATTRIBUTE_ID = {n: i for i, n in enumerate(ATTRIBUTES)}
# the folders Fashionpedia's archives unpack to (val images come in the val/test archive's "test")
IMAGE_DIRS = {"train": "train", "val": "test"}
ANN_FILES = {"train": "instances_attributes_train2020.json", "val": "instances_attributes_val2020.json"}


def image_size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width): small 3:4 portrait images, 128-144 x 96-108 (one shape once resized, so
    batches need no padding)."""
    h = int(rng.integers(128, 145))
    return h, round(0.75 * h)


def _garments(app) -> list[tuple[int, tuple[str, ...], frozenset[str] | None, frozenset[int] | None]]:
    """(category id, attribute names, piece parts, piece classes) of each garment the figure wears."""
    lower_cat = {"trousers": 6, "shorts": 7, "skirt": 8}[app.lower_kind]
    top_attrs = (app.upper, _SLEEVES[app.sleeves != "long"], _PATTERNS[app.upper_stripes is not None])
    lower_attrs: tuple[str, ...] = (app.lower,)
    if app.lower_kind == "skirt":
        lower_attrs += (_LENGTHS[bool(app.skirt_long)],)
    out: list = [(1, top_attrs, None, frozenset({UPPER})),
                 (lower_cat, lower_attrs, None, frozenset({SKIRT if lower_cat == 8 else PANTS}))]
    if app.hat:
        out.append((14, (app.hat,), frozenset({"hat"}), None))
    out.append((23, (), frozenset({"l_shoe"}), None))
    out.append((23, (), frozenset({"r_shoe"}), None))
    if app.bag:
        out.append((24, (app.bag,), frozenset({"bag"}), None))
    elif app.backpack:
        out.append((24, (app.backpack,), frozenset({"backpack", "strap"}), None))
    return out


def fashion_image(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[dict]]:
    """One image and its garments: ``[{category_id, attributes: (names), mask: (H, W) uint8}]``."""
    app = sample_appearance(rng)
    if rng.random() < 0.5 and not app.bag and not app.backpack:
        app.bag = str(rng.choice(list(COLORS)))  # more bags than the street default: a category to learn
    pose = sample_pose(rng, kind=str(rng.choice(["stand", "stand", "walk", "wave", "raise"])))
    fig = build_figure(app, pose)
    ext = fig.extent(frozenset())
    ph = rng.uniform(0.8, 0.94) * h
    ph = min(ph, 0.95 * w * (ext[3] - ext[1]) / max(ext[2] - ext[0], 1e-6))  # wide poses still fit
    cx = w / 2 + rng.uniform(-0.06, 0.06) * w
    top = (h - ph) / 2 + rng.uniform(-0.25, 0.25) * (h - ph)
    fig = fig.fit([cx, top, cx, top + ph])
    canvas = Canvas(h, w, SS)
    canvas.add_figure(fig)
    style = sample_style(rng, str(rng.choice(["room", "gradient", "noise", "street"])))
    img, _ = canvas.render(background(rng, h, w, style), light_field(rng, h, w, style, 0.06),
                           float(rng.uniform(1, 4)), rng)
    ids = canvas.id_map()[SS // 2::SS, SS // 2::SS]  # the piece each output pixel shows (as the labels)
    parts = np.array(["" if p is None else p.part for p in canvas.pieces])
    classes = np.array([-1 if p is None else p.cls for p in canvas.pieces])
    garments = []
    for cat, attrs, want_parts, want_cls in _garments(app):
        pick = np.isin(parts, list(want_parts)) if want_parts is not None else np.isin(classes, list(want_cls))
        pick[0] = False
        mask = pick[ids].astype(np.uint8)
        if int(mask.sum()) >= MIN_PIXELS:
            garments.append({"category_id": cat, "attributes": attrs, "mask": mask})
    return img, garments


def _file_name(seed: int, split: str, i: int) -> str:
    # Fashionpedia 2020 names images by a 32-hex digest
    return hashlib.md5(f"{NAME}/{seed}/{split}/{i}".encode()).hexdigest() + ".jpg"


def categories_json() -> list[dict]:
    return [{"id": cid, "name": name, "supercategory": sup, "level": 2, "taxonomy_id": f"cat{cid:06d}"}
            for cid, name, sup in CATEGORIES]


def attributes_json() -> list[dict]:
    return [{"id": i, "name": n, "supercategory": _SUPER[n], "level": 1, "taxonomy_id": f"att{i:06d}"}
            for i, n in enumerate(ATTRIBUTES)]


def write_fashion(root: Path, counts: dict[str, int], seed: int, keep: int = 0) -> tuple[dict, dict[str, list[dict]]]:
    """Write every split; returns (facts for ``synth.json``, up to ``keep`` samples per split for previews)."""
    root = Path(root)
    shown: dict[str, list[dict]] = {}
    per_cat: dict[str, int] = {}
    ann_id = 1
    for split, n in counts.items():
        rng = split_rng(seed, NAME, split)
        images, anns = [], []
        shown[split] = []
        folder = IMAGE_DIRS.get(split, split)
        for i in range(n):
            h, w = image_size(rng)
            img, garments = fashion_image(rng, h, w)
            image_id = {"train": 1, "val": 900001}.get(split, 1900001) + i
            fname = _file_name(seed, split, i)
            write_image(root / folder / fname, img)
            images.append({"id": image_id, "width": w, "height": h, "file_name": fname, "license": 1,
                           "time_captured": "unknown", "original_url": "", "isstatic": 1, "kaggle_id": fname[:-4]})
            for g in garments:
                rle = encode_mask(g["mask"])
                ys, xs = np.nonzero(g["mask"])
                box = [float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min())]
                anns.append({"id": ann_id, "image_id": image_id, "category_id": g["category_id"],
                             "attribute_ids": sorted(ATTRIBUTE_ID[a] for a in g["attributes"]),
                             "segmentation": rle, "bbox": box, "area": float(g["mask"].sum()), "iscrowd": 0})
                name = CATEGORY_NAMES[[c[0] for c in CATEGORIES].index(g["category_id"])]
                per_cat[name] = per_cat.get(name, 0) + 1
                ann_id += 1
            if i < keep:
                shown[split].append({"image": img, "garments": garments})
        write_fashionpedia(root / ANN_FILES.get(split, f"instances_attributes_{split}2020.json"), images, anns,
                           categories_json(), attributes_json(),
                           info={"description": "hcbench synthetic Fashionpedia-format set", "version": "1.0"})
    return {"instances": per_cat}, shown


# --------------------------------------------------------------------------- preview
_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
                     (70, 240, 240), (240, 50, 230), (210, 245, 60)], np.uint8)


def fashion_sheet(items: Sequence[dict], path: Path, zoom: int = 2) -> Path:
    """Each image beside its garment masks (one colour per instance), captioned category: attributes."""
    from PIL import Image, ImageDraw

    from hcbench.synth.preview import _grid, _save

    tiles = []
    for it in items:
        img = it["image"]
        over = img.astype(np.float32)
        lines = []
        for k, g in enumerate(it["garments"]):
            col = _PALETTE[k % len(_PALETTE)].astype(np.float32)
            m = g["mask"].astype(bool)
            over[m] = 0.35 * over[m] + 0.65 * col
            name = CATEGORY_NAMES[[c[0] for c in CATEGORIES].index(g["category_id"])].split(",")[0]
            lines.append((tuple(int(v) for v in col), f"{name}: {', '.join(g['attributes']) or '-'}"))
        pair = Image.fromarray(np.concatenate([img, over.astype(np.uint8)], axis=1))
        pair = pair.resize((pair.width * zoom, pair.height * zoom), Image.NEAREST)
        tile = Image.new("RGB", (max(pair.width, 260), pair.height + 11 * len(lines) + 4), (24, 24, 24))
        tile.paste(pair, (0, 0))
        d = ImageDraw.Draw(tile)
        for j, (col, text) in enumerate(lines):
            d.text((2, pair.height + 2 + 11 * j), text, fill=col)
        tiles.append(tile)
    return _save(_grid(tiles, 3), path)
