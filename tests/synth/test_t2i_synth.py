"""synth_t2i: captions say what the person truly looks like (in varied words and orders), the set is
written in the CUHK-PEDES format that the real reader reads, and its preview is drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hcbench.data.cards import get_dataset_card
from hcbench.data.readers.t2i import read_cuhkpedes, split_counts
from hcbench.synth.body import HAIR_COLORS, Appearance, Build
from hcbench.synth.t2i import SYNONYMS, describe, write_t2i_synth


def _app(**kw) -> Appearance:
    base = dict(skin=(200, 150, 110), hair=HAIR_COLORS[3], long_hair=True, upper="red", sleeves="short",
                lower_kind="trousers", lower="navy", shoes=(240, 240, 240), build=Build(), female=True,
                hat="yellow", backpack=None, bag="green", bag_side="l")
    return Appearance(**{**base, **kw})


def _says(text: str, color: str, noun: str) -> bool:
    return any(f"{c} {noun}" in text for c in SYNONYMS.get(color, (color,)))


def test_captions_describe_the_true_appearance():
    rng = np.random.default_rng(0)
    app = _app()
    caps = [describe(rng, app, "walk", "back") for _ in range(60)]
    for c in caps:
        low = c.lower()
        assert any(w in low for w in ("woman", "lady")) and " he " not in f" {low} "
        assert any(_says(low, "red", n) for n in ("t-shirt", "short-sleeved shirt", "short sleeve top")), c
        assert _says(low, "navy", "pants") or _says(low, "navy", "trousers"), c
        assert "long blond" in low, c
        assert "yellow hat" in low or "yellow cap" in low, c
        assert ("green bag in her left hand" in low or "green handbag in her left hand" in low), c
        assert "backpack" not in low and "skirt" not in low and "shorts" not in low
    assert len(set(caps)) >= 20  # templates, synonyms and clause order vary
    firsts = {c.split(".")[0].split()[0] for c in caps}
    assert len(firsts) >= 3
    # the upper garment comes before the lower one in some captions and after it in others
    order = {c.lower().index("red") < c.lower().index("navy") if "navy" in c.lower() else
             c.lower().index("red") < c.lower().index("dark blue") for c in caps}
    assert order == {True, False}
    poses = " ".join(caps).lower()
    assert "walking" in poses and ("behind" in poses or "back to the camera" in poses)


def test_captions_follow_each_attribute():
    rng = np.random.default_rng(1)
    man = describe(rng, _app(female=False, long_hair=False, sleeves="long", lower_kind="skirt", skirt_long=True,
                             hat=None, bag=None, backpack="purple", upper_stripes="white"), "crouch", "side")
    low = man.lower()
    assert any(w in low for w in (" man", "guy")) and "short blond hair" in low.replace("hair is short blond",
                                                                                          "short blond hair")
    assert "white stripes" in low and "purple backpack" in low and "skirt" in low
    assert any(s in low for s in ("long", "knee-length")) and "hat" not in low and "cap" not in low


def test_write_in_cuhkpedes_format(tmp_path: Path):
    root = tmp_path / "synth_t2i"
    out = write_t2i_synth(root, 5, 3, 4, 2, seed=0, keep=2)
    recs = json.loads((root / "reid_raw.json").read_text())
    assert set(recs[0]) == {"split", "captions", "file_path", "processed_tokens", "id"}
    assert recs[0]["id"] == 1 and all(len(r["captions"]) == 2 for r in recs)
    card = get_dataset_card("synth_t2i")
    train, test = read_cuhkpedes(root, "train", card), read_cuhkpedes(root, "test", card)
    assert split_counts(train.samples) == {"identities": 5, "images": 15, "captions": 30} == out["counts"]["train"]
    assert split_counts(test.samples) == {"identities": 4, "images": 8, "captions": 16} == out["counts"]["test"]
    assert not {s.pid for s in train.samples} & {s.pid for s in test.samples}
    assert train.samples[0].image.is_file() and len(out["shown"]["train"]) == 2
    again = tmp_path / "again"
    write_t2i_synth(again, 5, 3, 4, 2, seed=0)
    assert (again / "reid_raw.json").read_bytes() == (root / "reid_raw.json").read_bytes()


def test_data_synth_writes_it_with_a_preview(tmp_path: Path):
    from hcbench.synth import write_suite

    out = write_suite(tmp_path / "data", datasets=["synth_t2i"], fraction=0.1, preview=tmp_path / "preview")
    root = out["synth_t2i"]
    assert (root / "reid_raw.json").is_file() and (root / "synth.json").is_file()
    assert sorted(p.name for p in (tmp_path / "preview").iterdir()) == ["synth_t2i_test.png", "synth_t2i_train.png"]
    from PIL import Image

    assert Image.open(tmp_path / "preview" / "synth_t2i_train.png").size[0] > 200
