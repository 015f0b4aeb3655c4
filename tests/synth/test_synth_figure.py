"""The person model: joint limits, left/right in the person's own frame, visibility, labels."""

import numpy as np
import pytest
from PIL import Image

from hcbench.synth.attributes import ATTRIBUTES, attribute_labels
from hcbench.synth.body import (
    FOREARM,
    SHIN,
    THIGH,
    UPPER_ARM,
    Appearance,
    Build,
    Pose,
    sample_appearance,
    sample_pose,
    skeleton,
)
from hcbench.synth.canvas import Canvas
from hcbench.synth.figure import build_figure
from hcbench.synth.scene import person_crop

L_SHO, R_SHO, L_WRI, R_WRI, L_ANK, R_ANK = 5, 6, 9, 10, 15, 16


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def test_sampled_poses_respect_joint_limits_and_bone_lengths():
    rng = np.random.default_rng(0)
    for _ in range(400):
        app, pose = sample_appearance(rng), sample_pose(rng)
        j = skeleton(app, pose).joints
        for s in "lr":
            upper, fore = j[f"{s}_elbow"] - j[f"{s}_shoulder"], j[f"{s}_wrist"] - j[f"{s}_elbow"]
            thigh, shin = j[f"{s}_knee"] - j[f"{s}_hip"], j[f"{s}_ankle"] - j[f"{s}_knee"]
            assert np.linalg.norm(upper) == pytest.approx(UPPER_ARM)
            assert np.linalg.norm(fore) == pytest.approx(FOREARM)
            assert np.linalg.norm(thigh) == pytest.approx(THIGH * app.build.leg)
            assert np.linalg.norm(shin) == pytest.approx(SHIN * app.build.leg)
            assert _angle(upper, fore) <= 150.0  # elbow flexion
            assert _angle(thigh, shin) <= 140.0  # knee flexion
            assert pose.legs[s][1] <= 110.0  # hip flexion
        centre = {"front": [0.0], "back": [180.0], "side": [90.0, -90.0]}[pose.view]
        assert min(abs((pose.yaw - c + 180) % 360 - 180) for c in centre) <= 25.0  # unambiguous view


def _upright(view_yaw: float, arms_out: bool = False) -> tuple[Appearance, Pose]:
    app = Appearance(skin=(220, 180, 140), hair=(30, 20, 20), long_hair=False, upper="red", sleeves="short",
                     lower_kind="shorts", lower="blue", shoes=(30, 30, 30), build=Build())
    arm = (40.0, 0.0, 40.0, 0.0) if arms_out else (10.0, 0.0, 10.0, 5.0)
    pose = Pose(yaw=view_yaw, view="front", arms={"l": arm, "r": arm}, legs={"l": (8, 0, 0), "r": (8, 0, 0)})
    return app, pose


@pytest.mark.parametrize("yaw,left_on_image_right", [(0.0, True), (180.0, False)])
def test_left_right_follow_the_person_not_the_image(yaw, left_on_image_right):
    app, pose = _upright(yaw, arms_out=True)
    fig = build_figure(app, pose).fit([20, 10, 100, 150])
    canvas = Canvas(160, 120, 2)
    canvas.add_figure(fig)
    img, labels = canvas.render(Image.new("RGB", (60, 80), (90, 90, 90)))
    kp = fig.keypoints
    assert (kp[L_SHO, 0] > kp[R_SHO, 0]) == left_on_image_right
    assert (kp[L_ANK, 0] > kp[R_ANK, 0]) == left_on_image_right
    xs = {c: np.nonzero(labels == c)[1].mean() for c in (14, 15, 16, 17, 18, 19)}
    for left, right in ((14, 15), (16, 17), (18, 19)):  # LIP left-/right- arm, leg, shoe
        assert (xs[left] > xs[right]) == left_on_image_right
    # the left wrist keypoint sits on left-arm pixels (hand), the right one on right-arm pixels
    for j, cls in ((L_WRI, 14), (R_WRI, 15)):
        x, y = kp[j]
        assert labels[int(y), int(x)] == cls


def test_side_view_hides_the_far_side_and_shows_the_near_side():
    app, pose = _upright(90.0)  # facing image right: the person's left side is away from the camera
    canvas = Canvas(160, 120, 2)
    canvas.add_figure(build_figure(app, pose).fit([20, 10, 100, 150]))
    canvas.render(Image.new("RGB", (60, 80), (90, 90, 90)))
    v = canvas.measure()[0].keypoints[:, 2]
    assert v[R_SHO] == 2 and v[L_SHO] == 1  # far shoulder behind the torso
    assert v[1] == 1 and v[2] == 2  # far (left) eye hidden, near (right) eye visible
    assert v[11] == 1 and v[13] == 1 and v[14] == 2  # far hip and knee hidden by the near leg


def test_outside_and_occluded_keypoints_get_v0_and_v1():
    rng = np.random.default_rng(3)
    seen_v0 = seen_v1_by_object = False
    for _ in range(60):
        shot = person_crop(rng, 144, 112, sample_appearance(rng), sample_pose(rng), truncate_p=0.5, occlude_p=0.5)
        v = shot.people[0].keypoints[:, 2]
        x, y = shot.figures[0].keypoints.T  # where the joints really are
        inside = (x >= 0) & (x < 112) & (y >= 0) & (y < 144)
        assert np.array_equal(v == 0, ~inside)  # v=0 exactly for keypoints outside the frame
        seen_v0 |= bool((v == 0).any())
        if shot.extra["occluded"] and not shot.extra["truncated"]:
            seen_v1_by_object |= bool((v == 1).sum() > 3)
    assert seen_v0 and seen_v1_by_object


def _render(app: Appearance, pose: Pose):
    canvas = Canvas(128, 64, 2)
    canvas.add_figure(build_figure(app, pose).fit([14, 8, 50, 120]))
    img, _ = canvas.render(Image.new("RGB", (32, 64), (90, 90, 90)))  # no light, no noise
    return img.astype(int), canvas.measure()[0]


def test_attribute_labels_are_read_off_the_pixels():
    """HandBag is 1 exactly when the bag shows: checked against an independent pixel difference
    between the same person rendered with and without the bag."""
    rng = np.random.default_rng(5)
    outcomes = set()
    for _ in range(40):
        app, pose = sample_appearance(rng), sample_pose(rng, view=str(rng.choice(["front", "side", "back"])))
        app.bag = "yellow"
        with_bag, m = _render(app, pose)
        app.bag = None
        without, _ = _render(app, pose)
        app.bag = "yellow"
        changed = int((np.abs(with_bag - without).sum(2) > 30).sum())
        label = dict(zip(ATTRIBUTES, attribute_labels(app, pose, m), strict=True))["HandBag"]
        outcomes.add(int(label))
        if label:
            assert changed >= 15, (changed, m.part_pixels.get("bag"))
        else:
            assert changed <= 25, (changed, m.part_pixels.get("bag"))
    assert outcomes == {0, 1}  # some bags are hidden behind the body, most are not
    app, pose = _upright(0.0)
    app.hat = "green"
    labels = dict(zip(ATTRIBUTES, attribute_labels(app, pose, _render(app, pose)[1]), strict=True))
    assert labels == {**{a: 0 for a in ATTRIBUTES}, "Front": 1, "Hat": 1, "ShortSleeve": 1, "Shorts": 1, "UpperRed": 1}
