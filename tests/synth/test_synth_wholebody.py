"""Synthetic whole-body keypoints (feet, face, hands where the figure draws them) and the
identity-disjoint attribute split, read back through the real readers and `data check`."""

from __future__ import annotations

import json

import numpy as np

from hcbench.data.cards import read_split
from hcbench.data.check import check_dataset
from hcbench.synth.body import sample_appearance, sample_pose
from hcbench.synth.scene import person_crop


def _shot(view: str, seed: int):
    rng = np.random.default_rng(seed)
    return person_crop(rng, 150, 110, sample_appearance(rng), sample_pose(rng, view), height_frac=(0.9, 0.9),
                       wholebody=True)


def test_face_points_follow_the_drawn_face_and_hands_the_drawn_hands():
    for seed in range(6):
        front, back = _shot("front", seed).people[0], _shot("back", seed).people[0]
        face_f, face_b = front.wholebody[6:74], back.wholebody[6:74]
        assert (face_b[:, 2] == 0).all()  # a face turned away is not drawn, so not labelled
        assert (face_f[:, 2] > 0).mean() > 0.9
        # the face points sit around the head: inside the head box, give or take a few pixels
        hx, hy, hw, hh = front.head_box
        inside = ((face_f[:, 0] > hx - 3) & (face_f[:, 0] < hx + hw + 3) & (face_f[:, 1] > hy - 3)
                  & (face_f[:, 1] < hy + hh + 3))
        assert inside.all(), seed
        # each hand's 21 points lie within a hand's reach of its wrist keypoint
        for start, wrist in ((74, 9), (95, 10)):
            d = np.linalg.norm(front.wholebody[start:start + 21, :2] - front.keypoints[wrist, :2], axis=1)
            assert d.max() < 0.1 * 150, (seed, d.max())
        # feet near the ankles
        for start, ankle in ((0, 15), (3, 16)):
            d = np.linalg.norm(front.wholebody[start:start + 3, :2] - front.keypoints[ankle, :2], axis=1)
            assert d.max() < 0.08 * 150


def test_synth_wholebody_and_zs_read_back_and_pass_data_check(tmp_path):
    from hcbench.synth import write_suite

    roots = write_suite(tmp_path, "smoke", seed=0, datasets=["synth_wholebody", "synth_attr_zs"], fraction=0.2,
                        preview=tmp_path / "preview")
    for name, root in roots.items():
        rep = check_dataset(name, root)
        assert rep.ok, (name, rep.problems)
    val = read_split("synth_wholebody", "val", roots["synth_wholebody"])
    kp = np.stack([s.keypoints for s in val.samples])
    assert kp.shape[1:] == (133, 3) and (kp[:, 23:91, 2] > 0).any() and (kp[:, 91:, 2] > 0).any()
    doc = json.loads((roots["synth_wholebody"] / "annotations" / "coco_wholebody_val_v1.0.json").read_text())
    for a in doc["annotations"]:
        assert a["face_valid"] == any(v > 0 for v in a["face_kpts"][2::3])
    manifest = json.loads((roots["synth_attr_zs"] / "synth.json").read_text())
    assert manifest["identities"]["train"] >= 2 and manifest["identities"]["test"] >= 2
    sheets = sorted(p.name for p in (tmp_path / "preview").glob("*.png"))
    assert "synth_wholebody_val.png" in sheets and "synth_attr_zs_test.png" in sheets
