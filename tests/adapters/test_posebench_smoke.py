"""Smoke tiers of the new cards end to end (`hcbench run`'s run_one): the synthetic stand-ins
(whole-body, zero-shot attribute split), the real cards on synthetic data written in their real
layout, and OCHuman's eval-only card on the real OCHuman sample (trained on the real COCO sample)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hcbench.engine.progress import Progress
from hcbench.engine.runner import run_one
from hcbench.engine.spec import RunSpec

REAL = Path(__file__).resolve().parents[2] / "tests" / "real-samples"


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _run(tmp_path: Path, card: str, **kw):
    spec = RunSpec(backbone="vit_tiny", card=card, tier="smoke", seed=0, suite="t", out=tmp_path / "out",
                   work_dir=tmp_path / "runs", device="cpu", workers=0, **kw)
    record, trained = run_one(spec, Progress(enabled=False))
    assert trained and record.card.tier == "smoke"
    return record


def test_synth_wholebody_smoke_exercises_the_133_keypoint_head_and_metric(tmp_path):
    from hcbench.synth import write_suite

    write_suite(tmp_path / "synth", "smoke", datasets=["synth_wholebody"], fraction=0.25)
    rec = _run(tmp_path, "synth_wholebody", synth_dir=tmp_path / "synth")
    assert set(rec.metrics) == {"AP", "AR", "body_AP", "foot_AP", "face_AP", "lefthand_AP", "righthand_AP"}
    assert all(v is None or 0.0 <= v <= 1.0 for v in rec.metrics.values())
    preds = (tmp_path / "out" / "t" / "vit_tiny" / "synth_wholebody.smoke.predictions.json")
    import json

    first = json.loads(preds.read_text())[0]
    assert len(first["keypoints"]) == 133 * 3


def test_synth_attr_zs_smoke_runs_the_zero_shot_reader(tmp_path):
    from hcbench.synth import write_suite

    root = write_suite(tmp_path / "synth", "smoke", datasets=["synth_attr_zs"], fraction=0.25)["synth_attr_zs"]
    from hcbench.data.cards import read_split

    train, test = read_split("synth_attr_zs", "trainval", root), read_split("synth_attr_zs", "test", root)
    assert not {s.image.name for s in train.samples} & {s.image.name for s in test.samples}
    rec = _run(tmp_path, "synth_attr_zs", synth_dir=tmp_path / "synth")
    assert 0.0 <= rec.metrics["mA"] <= 1.0


def _ochuman_data(tmp_path: Path) -> Path:
    och, coco = REAL / "ochuman", REAL / "coco"
    if not och.is_dir() or not coco.is_dir():
        pytest.skip("real OCHuman/COCO samples not found")
    root = tmp_path / "data"
    (root / "ochuman" / "annotations").mkdir(parents=True)
    for split in ("val", "test"):
        shutil.copy(och / "test_ochuman.json",
                    root / "ochuman" / "annotations" / f"ochuman_coco_format_{split}_range_0.00_1.00.json")
    (root / "ochuman" / "images").symlink_to(och, target_is_directory=True)
    (root / "coco" / "annotations").mkdir(parents=True)
    shutil.copy(coco / "test_coco.json", root / "coco" / "annotations" / "person_keypoints_train2017.json")
    (root / "coco" / "train2017").symlink_to(coco, target_is_directory=True)
    return root


@pytest.mark.slow  # the real card's 256x192 smoke tier: ~20 s of CPU, minutes on a shared box
def test_ochuman_smoke_trains_on_coco_and_scores_the_real_sample(tmp_path):
    rec = _run(tmp_path, "ochuman_pose", root=_ochuman_data(tmp_path))
    assert rec.dataset.name == "ochuman" and rec.dataset.split == "val"
    assert set(rec.metrics) == {"AP", "AP50", "AP75", "APm", "APl", "AR"}
    assert rec.metrics["AP"] is not None and 0.0 <= rec.metrics["AP"] <= 1.0


@pytest.mark.slow
def test_coco_wholebody_card_smoke_on_synthetic_data_in_the_real_layout(tmp_path):
    from hcbench.synth import write_suite

    src = write_suite(tmp_path / "synth", "smoke", datasets=["synth_wholebody"], fraction=0.25)["synth_wholebody"]
    root = tmp_path / "coco_wholebody"
    (root / "annotations").mkdir(parents=True)
    for split, folder in (("train", "train2017"), ("val", "val2017")):
        name = f"coco_wholebody_{split}_v1.0.json"
        shutil.copy(src / "annotations" / name, root / "annotations" / name)
        (root / folder).symlink_to(src / "images" / split, target_is_directory=True)
    rec = _run(tmp_path, "coco_wholebody_pose", root=root)
    assert {"AP", "body_AP", "foot_AP", "face_AP", "lefthand_AP", "righthand_AP"} <= set(rec.metrics)


@pytest.mark.slow
@pytest.mark.parametrize("card,dataset", [("peta_zs_attr", "peta_zs"), ("rapzs_attr", "rapzs")])
def test_zs_attribute_cards_smoke_on_a_file_in_the_release_layout(tmp_path, card, dataset):
    from hcbench.data.cards import get_dataset_card
    from hcbench.data.readers.par_pickle import write_par_pickle
    from hcbench.synth.attributes import write_attributes_zs

    # synthetic crops of disjoint identities, labelled with the card's attribute names
    out = write_attributes_zs(tmp_path / "src", {"train_ids": 10, "val_ids": 2, "test_ids": 4, "imgs_per_id": 3},
                              seed=0)
    ds = get_dataset_card(dataset)
    root = tmp_path / dataset
    images = root / ds.split("test").files["images"]
    images.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tmp_path / "src" / "images", images)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (len(out["names"]), len(ds.attributes)))
    labels[:, : out["labels"].shape[1]] = out["labels"][:, : labels.shape[1]]
    write_par_pickle(root / ds.split("test").files["annotation"], out["names"], labels, ds.attributes,
                     out["partition"])
    rec = _run(tmp_path, card, root=root)
    assert 0.0 <= rec.metrics["mA"] <= 1.0


def _synth_pose_in_layout(tmp_path: Path, dataset: str) -> Path:
    """synth_pose's images and persons rewritten into ``dataset``'s real layout (names, keypoint
    count, categories, folders), for a smoke run of that dataset's card."""
    import json

    from hcbench.data.cards import get_dataset_card
    from hcbench.synth import write_suite

    src = write_suite(tmp_path / "synth", "smoke", datasets=["synth_pose"], fraction=0.1)["synth_pose"]
    card = get_dataset_card(dataset)
    k = len(card.keypoints.names)
    root = tmp_path / dataset
    for split, spec in card.splits.items():
        doc = json.loads((src / "annotations" / f"person_keypoints_{'train' if split == 'train' else 'val'}.json")
                         .read_text())
        img_src = src / "images" / ("train" if split == "train" else "val")
        images_dir = (root / spec.files["images"]).resolve()
        prefix = ""
        if dataset == "humanart":  # file names relative to the folder above the root
            prefix = f"HumanArt/images/real_human/{split}/"
        images_dir.mkdir(parents=True, exist_ok=True)
        for im in doc["images"]:  # split-prefixed names: AP-10K's splits share one image folder
            name = f"{prefix}{split}_{im['file_name']}"
            dst = images_dir / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(img_src / im["file_name"])
            im["file_name"] = name
        cats = [{"id": 1, "name": "a", "keypoints": card.keypoints.names, "skeleton": []}]
        if dataset == "ap10k":  # two species
            cats.append({"id": 2, "name": "b", "keypoints": card.keypoints.names, "skeleton": []})
        for i, a in enumerate(doc["annotations"]):
            a["keypoints"] = a["keypoints"][: 3 * k]
            a["category_id"] = 1 + (i % len(cats))
        doc["categories"] = cats
        path = root / spec.files["annotations"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("card,dataset", [("humanart_pose", "humanart"), ("ap10k_pose", "ap10k"),
                                          ("chimpact_pose", "chimpact")])
def test_coco_format_cards_smoke_on_synthetic_persons_in_their_layout(tmp_path, card, dataset):
    rec = _run(tmp_path, card, root=_synth_pose_in_layout(tmp_path, dataset))
    assert rec.metrics["AP"] is not None and 0.0 <= rec.metrics["AP"] <= 1.0
