"""An articulated stick-and-volume person: appearance, pose and its 3-D joints.

The body lives in a frame with X to the person's own left, Y down and Z forward, the
pelvis at the origin and the whole body one unit tall (crown to sole). A viewpoint is a
yaw about the vertical axis followed by an orthographic projection: image x = X cos + Z sin,
depth (towards the camera) = -X sin + Z cos. With yaw 0 the person faces the camera and
their left side appears on the image right, as in real photographs; the same rotation
gives back (yaw 180) and side (yaw +-90) views, so left/right labels stay anatomical.
Joint limits are those of a standing adult (elbow/knee 0..~140 deg, hip flexion <= 110).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RGB = tuple[int, int, int]

# COCO-17 keypoint order (the synthetic pose set uses it verbatim).
COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
                 (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
COCO_SIGMAS = (.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087,
               .089, .089)

# Named clothing colours: the attribute set and the ReID identities are built from these
# categories, so the centres are far apart and jitter never crosses into a neighbour.
COLORS: dict[str, RGB] = {
    "red": (205, 35, 40), "blue": (35, 70, 200), "green": (40, 150, 60), "yellow": (235, 205, 40),
    "white": (238, 238, 235), "black": (28, 28, 32), "gray": (125, 125, 130), "brown": (115, 70, 35),
    "pink": (240, 135, 180), "purple": (120, 50, 160), "orange": (240, 125, 25), "navy": (25, 35, 90),
}
DARK_COLORS = frozenset({"black", "navy", "brown", "gray", "purple"})  # "LowerDark" = one of these
SKIN_TONES: tuple[RGB, ...] = ((245, 215, 190), (230, 190, 150), (200, 150, 110), (160, 110, 75),
                               (110, 75, 50))
HAIR_COLORS: tuple[RGB, ...] = ((25, 20, 18), (70, 45, 25), (120, 85, 45), (200, 170, 100), (150, 150, 150))

VIEWS = ("front", "back", "side")
_VIEW_YAW = {"front": 0.0, "back": 180.0}


@dataclass
class Build:
    """Body-shape factors around 1.0 (a per-identity constant in ReID)."""

    shoulder: float = 1.0
    hip: float = 1.0
    limb: float = 1.0  # limb thickness
    head: float = 1.0
    leg: float = 1.0  # leg length share of the height


@dataclass
class Appearance:
    skin: RGB
    hair: RGB
    long_hair: bool
    upper: str  # colour name in COLORS
    sleeves: str  # "long" | "short"
    lower_kind: str  # "trousers" | "shorts" | "skirt"
    lower: str
    shoes: RGB
    build: Build
    female: bool = False
    upper_stripes: str | None = None  # second colour of horizontal stripes
    skirt_long: bool = False
    hat: str | None = None
    backpack: str | None = None
    bag: str | None = None  # hand bag colour
    bag_side: str = "r"
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-identity shade of the named colours

    def rgb(self, name: str) -> RGB:
        """The identity's own shade of a named colour (stable across its images)."""
        base = COLORS[name]
        return tuple(int(np.clip(c * t, 0, 255)) for c, t in zip(base, self.tint, strict=True))  # type: ignore[return-value]


@dataclass
class Pose:
    yaw: float  # degrees; 0 = facing the camera
    view: str  # "front" | "back" | "side" (the category the yaw was drawn from)
    roll: float = 0.0  # in-plane rotation of the whole body (degrees)
    lean: float = 0.0  # forward torso lean
    side_bend: float = 0.0
    head_yaw: float = 0.0  # relative to the body
    head_roll: float = 0.0
    # per side: (abduction, flexion) of the upper arm and of the forearm, degrees
    arms: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    # per side: (abduction, hip flexion, knee flexion), degrees
    legs: dict[str, tuple[float, float, float]] = field(default_factory=dict)


# ----------------------------------------------------------------------------- sampling
def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def sample_appearance(rng: np.random.Generator, *, female: bool | None = None) -> Appearance:
    """A random person; categorical choices only, so identities are easy to tell apart."""
    female = bool(rng.random() < 0.45) if female is None else female
    names = list(COLORS)
    upper = _pick(rng, names)
    lower = _pick(rng, [n for n in names if n != upper])
    if female:
        lower_kind = _pick(rng, ["skirt", "skirt", "trousers", "shorts"])
        build = Build(shoulder=rng.uniform(0.82, 0.92), hip=rng.uniform(1.05, 1.18), limb=rng.uniform(0.85, 0.95),
                      head=rng.uniform(0.95, 1.05), leg=rng.uniform(0.98, 1.05))
    else:
        lower_kind = _pick(rng, ["trousers", "trousers", "shorts"])
        build = Build(shoulder=rng.uniform(1.0, 1.15), hip=rng.uniform(0.9, 1.0), limb=rng.uniform(1.0, 1.2),
                      head=rng.uniform(0.95, 1.05), leg=rng.uniform(0.95, 1.02))
    stripes = None
    if rng.random() < 0.25:
        stripes = _pick(rng, [n for n in ("white", "black", "yellow", "navy") if n not in (upper, lower)])
    return Appearance(
        skin=_pick(rng, SKIN_TONES), hair=_pick(rng, HAIR_COLORS),
        long_hair=bool(rng.random() < (0.8 if female else 0.05)),
        upper=upper, sleeves="long" if rng.random() < 0.5 else "short",
        lower_kind=lower_kind, lower=lower,
        shoes=_pick(rng, [(30, 30, 30), (240, 240, 240), (90, 55, 30), (60, 60, 70)]),
        build=build, female=female, upper_stripes=stripes, skirt_long=bool(rng.random() < 0.4),
        hat=_pick(rng, names) if rng.random() < 0.3 else None,
        backpack=_pick(rng, names) if rng.random() < 0.3 else None,
        bag=_pick(rng, names) if rng.random() < 0.25 else None,
        bag_side="l" if rng.random() < 0.5 else "r",
        tint=tuple(rng.uniform(0.9, 1.08, 3)),  # type: ignore[arg-type]
    )


def sample_view(rng: np.random.Generator, view: str | None = None) -> tuple[str, float]:
    """A viewpoint category and a yaw well inside it (+-25 deg), so the category is unambiguous."""
    view = view or _pick(rng, VIEWS)
    if view == "side":
        base = 90.0 if rng.random() < 0.5 else -90.0
    else:
        base = _VIEW_YAW[view]
    return view, base + rng.uniform(-25, 25)


def sample_pose(rng: np.random.Generator, view: str | None = None, kind: str | None = None) -> Pose:
    """Preset pose families (stand/walk/run/raise/wave/reach/crouch) with jittered joint angles."""
    view, yaw = sample_view(rng, view)
    kind = kind or _pick(rng, ["stand", "stand", "walk", "walk", "run", "raise", "wave", "reach", "crouch"])
    u = rng.uniform

    def arm_rest() -> tuple[float, float, float, float]:
        abd, flex = u(4, 22), u(-15, 20)
        return abd, flex, abd * u(0.5, 1.0), flex + u(0, 35)

    arms = {"l": arm_rest(), "r": arm_rest()}
    legs = {s: (u(0, 10), u(-5, 8), u(0, 10)) for s in "lr"}
    lean = u(-4, 8)
    if kind in ("walk", "run"):
        amp = u(18, 32) if kind == "walk" else u(35, 55)
        ph = u(-1, 1)
        for s, sign in (("l", 1.0), ("r", -1.0)):
            hip = sign * ph * amp
            knee = max(0.0, -hip) * u(0.6, 1.2) + u(0, 15) + (40 if kind == "run" and hip < 0 else 0)
            legs[s] = (u(0, 6), hip, min(knee, 130))
            sh = -sign * ph * amp * u(0.8, 1.2)
            elbow = u(10, 30) if kind == "walk" else u(70, 100)
            arms[s] = (u(4, 12), sh, u(4, 12), sh + elbow)
        lean = u(2, 12) if kind == "run" else lean
    elif kind == "raise":
        for s in "lr":
            if rng.random() < 0.7:
                abd = u(100, 165)
                arms[s] = (abd, u(-10, 10), abd + u(-10, 10), u(-10, 30))
    elif kind == "wave":
        s = _pick(rng, "lr")
        abd = u(70, 110)
        arms[s] = (abd, u(-10, 15), min(175.0, abd + u(50, 80)), u(0, 20))
    elif kind == "reach":
        s = _pick(rng, "lr")
        fl = u(60, 110)
        arms[s] = (u(0, 25), fl, u(0, 25), fl + u(0, 30))
    elif kind == "crouch":
        for s in "lr":
            hf = u(60, 100)
            legs[s] = (u(5, 20), hf, min(135.0, hf + u(20, 45)))
        lean = u(15, 35)
        for s in "lr":
            fl = u(10, 50)
            arms[s] = (u(5, 20), fl, u(5, 20), fl + u(20, 70))
    return Pose(yaw=yaw, view=view, roll=u(-8, 8), lean=lean, side_bend=u(-6, 6), head_yaw=u(-30, 30),
                head_roll=u(-10, 10), arms=arms, legs=legs)


# ----------------------------------------------------------------------------- geometry
# Base proportions in height units (pelvis at 0, soles at +0.5, crown at about -0.5).
NECK_Y, SHOULDER_Y, HEAD_Y, HEAD_R = -0.30, -0.285, -0.43, 0.066
SHOULDER_X, HIP_X = 0.105, 0.075
UPPER_ARM, FOREARM, HAND = 0.165, 0.145, 0.045
THIGH, SHIN = 0.235, 0.215


def limb_dir(abd: float, flex: float, side: float) -> np.ndarray:
    """Unit direction of a limb from abduction (outwards) and flexion (forwards), degrees."""
    b, f = np.radians(abd), np.radians(flex)
    return np.array([side * np.sin(b) * np.cos(f), np.cos(b) * np.cos(f), np.sin(f)])


def _rot_x(t: float) -> np.ndarray:  # positive t turns "down" towards "forward"
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _rot_z(t: float) -> np.ndarray:
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _rot_y(t: float) -> np.ndarray:  # yaw about the vertical axis
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


@dataclass
class Skeleton3D:
    """Joint positions in the body frame plus the torso rotation (for volumes)."""

    joints: dict[str, np.ndarray]
    torso_rot: np.ndarray
    head_rot: np.ndarray  # body frame <- head frame (head yaw)
    head_r: float


def skeleton(app: Appearance, pose: Pose) -> Skeleton3D:
    b = app.build
    torso = _rot_z(np.radians(pose.side_bend)) @ _rot_x(np.radians(-pose.lean))
    j: dict[str, np.ndarray] = {"pelvis": np.zeros(3)}
    j["neck"] = torso @ np.array([0.0, NECK_Y, 0.0])
    head_r = HEAD_R * b.head
    j["head"] = torso @ np.array([0.0, HEAD_Y - (b.head - 1) * HEAD_R, 0.0])
    for s, side in (("l", 1.0), ("r", -1.0)):
        sh = torso @ np.array([side * SHOULDER_X * b.shoulder, SHOULDER_Y, 0.0])
        abd, fl, abd2, fl2 = pose.arms[s]
        el = sh + UPPER_ARM * (torso @ limb_dir(abd, fl, side))
        fdir = torso @ limb_dir(abd2, fl2, side)
        wr = el + FOREARM * fdir
        j[f"{s}_shoulder"], j[f"{s}_elbow"], j[f"{s}_wrist"] = sh, el, wr
        j[f"{s}_hand"] = wr + HAND * fdir
        hip = np.array([side * HIP_X * b.hip, 0.0, 0.0])
        labd, hf, kn = pose.legs[s]
        knee = hip + THIGH * b.leg * limb_dir(labd, hf, side)
        sdir = limb_dir(labd, hf - kn, side)
        ank = knee + SHIN * b.leg * sdir
        j[f"{s}_hip"], j[f"{s}_knee"], j[f"{s}_ankle"] = hip, knee, ank
        j[f"{s}_toe"] = ank + 0.06 * limb_dir(labd, hf - kn + 90, side)
    head_rot = _rot_y(np.radians(pose.head_yaw))
    h = j["head"]
    for name, p in (("nose", (0, 0.2, 1.0)), ("left_eye", (0.38, -0.08, 0.88)), ("right_eye", (-0.38, -0.08, 0.88)),
                    ("left_ear", (0.97, 0.05, -0.08)), ("right_ear", (-0.97, 0.05, -0.08))):
        j[name] = h + torso @ head_rot @ (np.array(p, float) * head_r)
    return Skeleton3D(j, torso, head_rot, head_r)


def project(points: np.ndarray, yaw_deg: float, roll_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(N,3) body-frame points -> (N,2) unit image coords (y down) and (N,) depth (+ = nearer)."""
    t = np.radians(yaw_deg)
    c, s = np.cos(t), np.sin(t)
    x = points[:, 0] * c + points[:, 2] * s
    d = -points[:, 0] * s + points[:, 2] * c
    r = np.radians(roll_deg)
    cr, sr = np.cos(r), np.sin(r)
    xy = np.stack([x * cr - points[:, 1] * sr, x * sr + points[:, 1] * cr], axis=1)
    return xy, d
