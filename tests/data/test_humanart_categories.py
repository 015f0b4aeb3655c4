"""Human-Art per-scene AP (``AP/<scene>``) on a small validation_humanart.json in the release's layout,
each against an independent pycocotools run restricted to that scene's images."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from hcbench.cards import get_card, resolve
from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.transforms.image import write_image
from hcbench.engine.runner import _defined
from hcbench.families.base import get_family

# (image folder under HumanArt/images, the image's `category` field or None, the metric's scene name)
SCENES = [("real_human/dance", "dance", "dance"),
          ("2D_virtual_human/digital_art", "digital art", "digital_art"),
          ("3D_virtual_human/garage_kits", "garage kits", "garage_kits"),
          ("2D_virtual_human/cartoon", None, "cartoon")]  # no field: the folder names the scene
NOISE = {"dance": 1.0, "digital_art": 3.0, "garage_kits": 6.0, "cartoon": 2.0}  # px, per scene


def _write_humanart(tmp_path: Path) -> tuple[Path, dict, list[dict]]:
    rng = np.random.default_rng(11)
    images, anns, results = [], [], []
    img_id = ann_id = 0
    for folder, category, scene in SCENES:
        for _ in range(3):
            img_id += 1
            rel = f"HumanArt/images/{folder}/{img_id:012d}.jpg"
            write_image(tmp_path / rel, rng.integers(0, 255, (120, 100, 3), dtype=np.uint8))
            im = {"id": img_id, "file_name": rel, "width": 100, "height": 120, "description": "x",
                  "page_url": "", "image_url": "", "picture_name": "p", "author": "a"}
            if category is not None:
                im["category"] = category
            images.append(im)
            for _p in range(int(rng.integers(1, 4))):
                ann_id += 1
                x0, y0 = rng.uniform(0, 40), rng.uniform(0, 50)
                kp = np.zeros((17, 3))
                kp[:, 0], kp[:, 1] = x0 + rng.uniform(0, 55, 17), y0 + rng.uniform(0, 65, 17)
                kp[:, 2] = rng.choice([0, 1, 2], 17, p=[0.15, 0.25, 0.6])
                kp[kp[:, 2] == 0] = 0
                anns.append({"id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                             "bbox": [x0, y0, 58.0, 68.0], "area": float(rng.uniform(1500, 3500)),
                             "num_keypoints": int((kp[:, 2] > 0).sum()), "keypoints": kp.reshape(-1).tolist(),
                             "keypoints_21": [0] * 63, "num_keypoints_21": 0, "self_contact": []})
                pred = kp[:, :2] + rng.normal(0, NOISE[scene], (17, 2))
                flat = np.concatenate([pred, rng.uniform(0.3, 1, (17, 1))], 1).reshape(-1)
                results.append({"image_id": img_id, "category_id": 1, "keypoints": flat.round(3).tolist(),
                                "score": float(rng.uniform(0.2, 1.0))})
            if rng.random() < 0.5:  # a false positive
                fp = np.concatenate([rng.uniform(0, 100, (17, 1)), rng.uniform(0, 120, (17, 1)),
                                     np.ones((17, 1))], 1).reshape(-1)
                results.append({"image_id": img_id, "category_id": 1, "keypoints": fp.round(3).tolist(),
                                "score": float(rng.uniform(0.2, 1.0))})
    cats = [{"id": 1, "name": "person", "supercategory": "person",
             "keypoints": list(get_dataset_card("humanart").keypoints.names), "skeleton": []}]
    doc = {"info": {}, "images": images, "annotations": anns, "categories": cats}
    path = tmp_path / "HumanArt" / "annotations" / "validation_humanart.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(doc))
    return tmp_path / "HumanArt", doc, results


def _pycocotools_ap(doc: dict, results: list[dict]) -> float:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(doc))
        gt.createIndex()
        dt = gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(gt, dt, "keypoints")  # COCO's 17 sigmas, the card's (eval.options.sigmas: coco)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_per_scene_ap_equals_pycocotools_on_each_scene(tmp_path):
    root, doc, results = _write_humanart(tmp_path)
    card = resolve(get_card("humanart_pose"), "full")
    split = read_split("humanart", "val", root)
    pred = tmp_path / "results.json"
    pred.write_text(json.dumps(results))
    m = get_family("pose").get_evaluator().score(pred, split, card)

    assert m["AP"] == pytest.approx(_pycocotools_ap(doc, results), abs=1e-12)
    seen = []
    for folder, category, scene in SCENES:  # the scene's images, picked from the file itself
        ids = {im["id"] for im in doc["images"] if im.get("category") == category and f"/{folder}/" in im["file_name"]}
        assert len(ids) == 3
        sub = {**doc, "images": [im for im in doc["images"] if im["id"] in ids],
               "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}
        ref = _pycocotools_ap(sub, [r for r in results if r["image_id"] in ids])
        assert m[f"AP/{scene}"] == pytest.approx(ref, abs=1e-12), scene
        seen.append(ref)
    assert len({round(v, 6) for v in seen}) == len(seen) and min(seen) < 0.9  # the scenes really differ
    # every scene the card lists is reported; the ones without images are undefined (stored as null)
    listed = [k for k in card.eval.metrics if k.startswith("AP/")]
    assert len(listed) == 19 and set(listed) <= set(m)
    absent = set(listed) - {f"AP/{s}" for *_, s in SCENES}
    assert absent and all(math.isnan(m[k]) and _defined(m[k]) is None for k in absent)
    assert all(_defined(m[f"AP/{s}"]) is not None for *_, s in SCENES)
