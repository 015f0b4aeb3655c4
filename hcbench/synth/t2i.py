"""synth_t2i: synthetic persons with captions of what they truly look like, in the CUHK-PEDES format.

An identity is one :class:`Appearance` (as in synth_reid); each of its images draws its own
camera, pose family and viewpoint. Each image gets two captions (as CUHK-PEDES has), written
from the *true* attributes of that identity and image: gender, hair length and colour, upper
garment colour and sleeve length (and stripes), lower garment kind/length and colour, shoes,
hat, backpack, hand bag and the hand holding it, and the pose and view of the image. Captions
differ in template, clause order, synonyms ("trousers"/"pants", "gray"/"grey") and in which
optional details they mention, so a model must match text and image on content, not on a
template. Train and test identities are disjoint.

Layout: ``reid_raw.json`` (records ``split``, ``captions``, ``file_path``, ``id`` 1-based,
``processed_tokens``) and ``imgs/synth/p{id}_s{k}.jpg``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from hcbench.data.readers.t2i import write_t2i
from hcbench.synth.body import HAIR_COLORS, Appearance, sample_appearance, sample_pose
from hcbench.synth.reid import Camera, sample_cameras
from hcbench.synth.scene import person_crop, split_rng

NAME = "synth_t2i"
H, W = 144, 48  # 3:1, the aspect of the field's 384 x 128 text-to-image input
POSE_KINDS = ("stand", "walk", "run", "raise", "wave", "reach", "crouch")
HAIR_NAMES = ("black", "dark brown", "brown", "blond", "gray")
SHOE_NAMES = {(30, 30, 30): "black", (240, 240, 240): "white", (90, 55, 30): "brown", (60, 60, 70): "dark gray"}
SYNONYMS = {"gray": ("gray", "grey"), "navy": ("navy", "dark blue", "navy blue")}


def _pick(rng: np.random.Generator, seq: Sequence[str]) -> str:
    return seq[int(rng.integers(len(seq)))]


def _color(rng: np.random.Generator, name: str) -> str:
    return _pick(rng, SYNONYMS.get(name, (name,)))


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def hair_name(app: Appearance) -> str:
    return HAIR_NAMES[HAIR_COLORS.index(app.hair)]


def describe(rng: np.random.Generator, app: Appearance, kind: str, view: str) -> str:
    """One caption of a person with appearance ``app`` in pose family ``kind`` seen from ``view``."""
    he = "she" if app.female else "he"
    his = "her" if app.female else "his"
    noun = _pick(rng, ("woman", "lady", "young woman") if app.female else ("man", "guy", "young man"))

    # upper garment
    if app.sleeves == "long":
        top = _pick(rng, ("long-sleeved shirt", "long sleeve top", "jacket", "sweater"))
    else:
        top = _pick(rng, ("t-shirt", "short-sleeved shirt", "short sleeve top"))
    upper = f"{_color(rng, app.upper)} {top}"
    if app.upper_stripes:
        upper += f" with {_color(rng, app.upper_stripes)} stripes"
    # lower garment
    if app.lower_kind == "trousers":
        bottom = f"{_color(rng, app.lower)} {_pick(rng, ('pants', 'trousers'))}"
    elif app.lower_kind == "shorts":
        bottom = f"{_color(rng, app.lower)} shorts"
    else:
        length = _pick(rng, ("long", "knee-length")) if app.skirt_long else "short"
        bottom = f"a {length} {_color(rng, app.lower)} skirt"
    hair = f"{'long' if app.long_hair else 'short'} {hair_name(app)} hair"
    shoes = f"{SHOE_NAMES.get(tuple(app.shoes), 'dark')} shoes"  # type: ignore[arg-type]

    extras: list[str] = []
    if app.hat:
        extras.append(_pick(rng, (f"{he} wears {_article(app.hat)} {_color(rng, app.hat)} hat",
                                  f"{he} has {_article(app.hat)} {_color(rng, app.hat)} cap on {his} head")))
    if app.backpack:
        extras.append(_pick(rng, (f"{he} is carrying {_article(app.backpack)} {_color(rng, app.backpack)} backpack",
                                  f"{_article(app.backpack)} {_color(rng, app.backpack)} backpack is on {his} back")))
    if app.bag:
        side = "left" if app.bag_side == "l" else "right"
        extras.append(_pick(rng, (f"{he} holds {_article(app.bag)} {_color(rng, app.bag)} bag in {his} {side} hand",
                                  f"{he} is carrying {_article(app.bag)} {_color(rng, app.bag)} handbag in {his} {side} hand")))

    pose = {"stand": "standing", "walk": "walking", "run": "running", "raise": f"raising {his} arms",
            "wave": "waving", "reach": "reaching out with one arm", "crouch": "crouching"}[kind]
    facing = {"front": _pick(rng, ("facing the camera", "seen from the front")),
              "back": _pick(rng, ("seen from behind", f"with {his} back to the camera")),
              "side": _pick(rng, ("seen from the side", "in side view"))}[view]

    a_upper = f"{_article(upper)} {upper}"
    clothes = [a_upper, bottom]
    if rng.random() < 0.5:
        clothes.reverse()
    if rng.random() < 0.4:
        clothes.append(shoes)
    wear = " and ".join([", ".join(clothes[:-1]), clothes[-1]]) if len(clothes) > 1 else clothes[0]

    template = int(rng.integers(4))
    if template == 0:
        sents = [f"{_article(noun)} {noun} wearing {wear}", f"{he} has {hair}"]
    elif template == 1:
        sents = [f"the {noun} is {pose} {facing}", f"{he} is dressed in {wear}", f"{he} has {hair}"]
    elif template == 2:
        sents = [f"{_article(noun)} {noun} with {hair}, wearing {wear}"]
    else:
        sents = [f"this {noun} wears {wear}", f"{his} hair is {hair.removesuffix(' hair')}"]
    if template != 1 and rng.random() < 0.7:
        sents.append(_pick(rng, (f"{he} is {pose} {facing}", f"{he} is {pose}, {facing}")))
    rng.shuffle(extras)
    body, rest = sents[:1], sents[1:] + extras
    order = rng.permutation(len(rest))
    sents = body + [rest[i] for i in order]
    return " ".join(s[0].upper() + s[1:] + "." for s in sents)


def _shot(rng: np.random.Generator, app: Appearance, cam: Camera) -> tuple[np.ndarray, str, str]:
    kind = _pick(rng, POSE_KINDS)
    pose = sample_pose(rng, view=_pick(rng, ("front", "back", "side")), kind=kind)
    img = person_crop(rng, H, W, app, pose, style=cam.style, height_frac=(0.8, 0.92), x_jitter=0.05,
                      quality=cam.quality, light_jitter=0.1, measure=False).image
    return img, kind, pose.view


def write_t2i_synth(root: Path, n_train_ids: int, imgs_per_id: int, n_test_ids: int, test_imgs_per_id: int,
                    seed: int, keep: int = 0) -> dict:
    """Write ``reid_raw.json`` + ``imgs/``; returns the card ``files`` per split, per-split counts
    and up to ``keep`` (image, captions) pairs per split for previews."""
    rng = split_rng(seed, NAME, "all")
    cams = sample_cameras(rng)
    counts = {s: {"identities": 0, "images": 0, "captions": 0} for s in ("train", "test")}
    shown: dict[str, list[tuple[np.ndarray, list[str]]]] = {"train": [], "test": []}
    # never two identities with the same colours of upper and lower garment in one split: a
    # caption must be able to single out its person
    used: dict[str, set] = {"train": set(), "test": set()}

    def identity(split: str) -> Appearance:
        for _ in range(200):
            app = sample_appearance(rng)
            key = (app.upper, app.lower, app.lower_kind, app.sleeves)
            if key not in used[split]:
                used[split].add(key)
                return app
        return app

    def items() -> Iterator[tuple[np.ndarray, int, list[str], str, str]]:
        pid = 0
        for split, n_ids, per in (("train", n_train_ids, imgs_per_id), ("test", n_test_ids, test_imgs_per_id)):
            for _ in range(n_ids):
                pid += 1
                app = identity(split)
                counts[split]["identities"] += 1
                for k in range(per):
                    img, kind, view = _shot(rng, app, cams[int(rng.integers(len(cams)))])
                    caps = [describe(rng, app, kind, view) for _ in range(2)]
                    while caps[1] == caps[0]:
                        caps[1] = describe(rng, app, kind, view)
                    counts[split]["images"] += 1
                    counts[split]["captions"] += len(caps)
                    if len(shown[split]) < keep and k < 2:
                        shown[split].append((img, caps))
                    yield img, pid, caps, split, f"synth/p{pid:05d}_s{k:02d}.jpg"

    files = write_t2i(root, items(), "cuhkpedes")
    return {"files": files, "counts": counts, "shown": shown}


def t2i_sheet(items: Sequence[tuple[np.ndarray, Sequence[str]]], path: Path) -> Path:
    """Each image with its captions wrapped underneath."""
    import textwrap

    from PIL import Image, ImageDraw

    from hcbench.synth.preview import _grid, _save, _zoom

    tiles = []
    for img, caps in items:
        im = _zoom(img)
        lines = [ln for k, c in enumerate(caps) for ln in textwrap.wrap(f"{k + 1}. {c}", 34)]
        tile = Image.new("RGB", (max(im.width, 210), im.height + 11 * len(lines) + 4), (24, 24, 24))
        tile.paste(im, (0, 0))
        d = ImageDraw.Draw(tile)
        for k, ln in enumerate(lines):
            d.text((2, im.height + 2 + 11 * k), ln, fill=(230, 230, 230))
        tiles.append(tile)
    return _save(_grid(tiles, 6), path)
