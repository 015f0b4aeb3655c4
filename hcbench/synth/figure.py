"""From a 3-D skeleton to 2-D painted pieces: capsules, ellipses and hulls with a depth each.

A :class:`Figure` is one person as a list of :class:`Piece` (polygons in image units, a LIP
class id, a colour, an optional stripe texture, the anatomical part and a depth used for the
painter's order) plus its 17 projected keypoints with their depths. Depth offsets encode the
layering a tailor would expect: shirt hem over the trousers, sleeves over arms, the far arm
behind the torso in a side view, a backpack visible only from behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from hcbench.synth.body import (
    COCO_KEYPOINTS,
    NECK_Y,
    SHOULDER_Y,
    Appearance,
    Pose,
    project,
    skeleton,
)

RGB = tuple[int, int, int]

# LIP class ids used by the generator.
BG, HAT, HAIR, UPPER, PANTS, SKIRT, FACE = 0, 1, 2, 5, 9, 12, 13
ARM = {"l": 14, "r": 15}
LEG = {"l": 16, "r": 17}
SHOE = {"l": 18, "r": 19}
EYE_RGB = (35, 25, 25)

# Parts whose pixels make a keypoint "visible" besides the depth rule (see visibility()).
KP_PARTS: tuple[frozenset[str], ...] = tuple(frozenset(p) for p in (
    {"nose"}, {"l_eye"}, {"r_eye"}, {"l_ear"}, {"r_ear"},
    {"l_upper_arm", "strap"}, {"r_upper_arm", "strap"},
    {"l_upper_arm", "l_forearm"}, {"r_upper_arm", "r_forearm"},
    {"l_forearm", "l_hand"}, {"r_forearm", "r_hand"},
    {"l_thigh", "pelvis", "skirt"}, {"r_thigh", "pelvis", "skirt"},
    {"l_thigh", "l_shin", "skirt"}, {"r_thigh", "r_shin", "skirt"},
    {"l_shin", "l_shoe"}, {"r_shin", "r_shoe"},
))
BOX_HEAD_PARTS = frozenset({"head", "face", "nose", "l_eye", "r_eye", "l_ear", "r_ear", "hat"})
NON_BODY = frozenset({"bag"})  # drawn but outside the person's full box (hand-held)


@dataclass
class Piece:
    polys: list[np.ndarray]  # (N, 2) float arrays, image units
    cls: int
    color: RGB
    part: str
    depth: float
    stripe: tuple[np.ndarray, np.ndarray, float, RGB] | None = None  # origin, unit axis, period, colour
    person: int = -1

    def transformed(self, scale: float, offset: np.ndarray) -> Piece:
        stripe = None
        if self.stripe is not None:
            o, ax, per, col = self.stripe
            stripe = (o * scale + offset, ax, per * scale, col)
        return Piece([p * scale + offset for p in self.polys], self.cls, self.color, self.part, self.depth, stripe,
                     self.person)


@dataclass
class Figure:
    pieces: list[Piece]
    keypoints: np.ndarray  # (17, 2)
    kp_depth: np.ndarray  # (17,)
    appearance: Appearance
    pose: Pose
    extra: dict = field(default_factory=dict)

    def extent(self, parts_excluded: frozenset[str] = NON_BODY) -> np.ndarray:
        """Amodal [x0, y0, x1, y1] of all body pieces."""
        pts = np.concatenate([p for pc in self.pieces if pc.part not in parts_excluded for p in pc.polys])
        return np.array([*pts.min(0), *pts.max(0)])

    def placed(self, scale: float, offset) -> Figure:
        off = np.asarray(offset, float)
        extra = dict(self.extra)
        if "wb_xy" in extra:  # the whole-body points move with the figure
            extra["wb_xy"] = extra["wb_xy"] * scale + off
        return replace(self, pieces=[p.transformed(scale, off) for p in self.pieces],
                       keypoints=self.keypoints * scale + off, extra=extra)

    def fit(self, box) -> Figure:
        """Scale and translate so the body extent's height fills ``box`` [x0, y0, x1, y1] (centred in x)."""
        e = self.extent()
        s = (box[3] - box[1]) / max(e[3] - e[1], 1e-6)
        cx = 0.5 * (box[0] + box[2]) - s * 0.5 * (e[0] + e[2])
        return self.placed(s, (cx, box[1] - s * e[1]))


# ----------------------------------------------------------------------------- primitives
_UNIT: dict[int, np.ndarray] = {}
_HALF: dict[int, np.ndarray] = {}


def _unit(n: int) -> np.ndarray:
    if n not in _UNIT:
        t = np.linspace(0, 2 * np.pi, n, endpoint=False)
        _UNIT[n] = np.stack([np.cos(t), np.sin(t)], 1)
    return _UNIT[n]


def _circle(c, r, n: int = 18) -> np.ndarray:
    return _unit(n) * r + np.asarray(c, float)


def _ellipse(c, rx, ry, angle: float = 0.0, n: int = 20) -> np.ndarray:
    u = _unit(n) * (rx, ry)
    ca, sa = np.cos(angle), np.sin(angle)
    return u @ np.array([[ca, sa], [-sa, ca]]) + np.asarray(c, float)


def capsule(a, b, ra: float, rb: float | None = None, n: int = 8) -> np.ndarray:
    """Tapered capsule a->b as one polygon (two half-circles joined by tangents)."""
    if n not in _HALF:
        t = np.linspace(-np.pi / 2, np.pi / 2, n)
        _HALF[n] = np.stack([np.cos(t), np.sin(t)], 1)
    half = _HALF[n]
    rb = ra if rb is None else rb
    a, b = np.asarray(a, float), np.asarray(b, float)
    dx, dy = b[0] - a[0], b[1] - a[1]
    norm = np.hypot(dx, dy)
    ca, sa = (dx / norm, dy / norm) if norm > 1e-9 else (1.0, 0.0)
    rot = np.array([[ca, sa], [-sa, ca]])  # row vectors: v @ rot turns v by the axis angle
    out = np.empty((2 * n, 2))
    out[:n] = a - ra * (half @ rot)  # the cap around a faces away from b
    out[n:] = b + rb * (half @ rot)
    return out


def convex_hull(pts: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain; small point sets only."""
    p = sorted(map(tuple, np.asarray(pts, float)))
    if len(p) < 3:
        return np.asarray(p)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lo: list = []
    for q in p:
        while len(lo) >= 2 and cross(lo[-2], lo[-1], q) <= 0:
            lo.pop()
        lo.append(q)
    hi: list = []
    for q in reversed(p):
        while len(hi) >= 2 and cross(hi[-2], hi[-1], q) <= 0:
            hi.pop()
        hi.append(q)
    return np.asarray(lo[:-1] + hi[:-1])


def _stripe(a, b, period: float, color: RGB):
    """Stripes across the a->b axis (horizontal bands on an upright torso)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ax = b - a
    n = np.hypot(*ax)
    return (a, ax / n if n > 1e-9 else np.array([0.0, 1.0]), period, color)


# ----------------------------------------------------------------------------- the figure
def build_figure(app: Appearance, pose: Pose) -> Figure:
    sk = skeleton(app, pose)
    names = list(sk.joints)
    xy, dep = project(np.stack([sk.joints[n] for n in names]), pose.yaw, pose.roll)
    P = {n: xy[i] for i, n in enumerate(names)}
    D = {n: float(dep[i]) for i, n in enumerate(names)}

    def proj(pts3) -> tuple[np.ndarray, np.ndarray]:
        return project(np.atleast_2d(np.asarray(pts3, float)), pose.yaw, pose.roll)

    b, T = app.build, sk.torso_rot
    upper_rgb, lower_rgb = app.rgb(app.upper), app.rgb(app.lower)
    stripe_rgb = app.rgb(app.upper_stripes) if app.upper_stripes else None
    per = 0.045  # stripe period, height units
    pieces: list[Piece] = []
    add = pieces.append

    # torso: an elliptic cross-section per level, so the side view keeps its thickness
    cy, sy = np.cos(np.radians(pose.yaw)), np.sin(np.radians(pose.yaw))
    levels = [(NECK_Y - 0.005, 0.07 * b.shoulder, 0.045), (SHOULDER_Y + 0.025, 0.128 * b.shoulder, 0.065),
              (-0.13, 0.098 * (b.shoulder + b.hip) / 2, 0.06), (0.055, 0.105 * b.hip, 0.07)]
    # one projection for the torso frame: spine direction, level centres, hem ends, face direction
    aux3 = np.array([[0, -1.0, 0], *[[0, y, 0] for y, _, _ in levels], [0, NECK_Y, 0], [0, 0.055, 0]]) @ T.T
    aux2, _ = proj(np.vstack([aux3, T @ sk.head_rot @ np.array([0, 0, 1.0])]))
    up = aux2[0] / np.hypot(*aux2[0])
    perp = np.array([-up[1], up[0]])
    hws = np.array([np.hypot(w * cy, d * sy) for _, w, d in levels])[:, None]
    centres = aux2[1:5]
    torso_poly = np.concatenate([centres + perp * hws, (centres - perp * hws)[::-1]])
    top2, bot2, fwd2 = aux2[5:6], aux2[6:7], aux2[7:8]
    torso_stripe = _stripe(top2[0], bot2[0], per, stripe_rgb) if stripe_rgb else None

    legs_d = {s: 0.5 * (D[f"{s}_hip"] + D[f"{s}_knee"]) - 0.03 for s in "lr"}
    skirt_depth = max(legs_d.values()) + 0.005
    torso_depth = max(-0.02, skirt_depth + 0.001) if app.lower_kind == "skirt" else -0.02
    add(Piece([torso_poly], UPPER, upper_rgb, "torso", torso_depth, torso_stripe))

    # neck and head
    hr = sk.head_r
    add(Piece([capsule(P["neck"], P["head"], 0.024 * b.limb)], FACE, app.skin, "neck", 0.1))
    add(Piece([_circle(P["head"], hr)], HAIR, app.hair, "head", 0.2))
    head_yaw = np.radians(pose.yaw + pose.head_yaw)
    down = np.array([-np.sin(np.radians(pose.roll)), np.cos(np.radians(pose.roll))])
    cos_h = float(np.cos(head_yaw))
    face_frame = None
    if cos_h > -0.2:
        hw = hr * (0.45 + 0.37 * max(cos_h, 0.0))
        c = P["head"] + fwd2[0] * 0.4 * hr + down * 0.18 * hr
        add(Piece([_ellipse(c, hw, 0.78 * hr, np.radians(pose.roll + pose.head_roll))], FACE, app.skin, "face", 0.201))
        face_frame = (c, hw, 0.78 * hr, np.radians(pose.roll + pose.head_roll))
    if D["nose"] - D["head"] > 0.25 * hr:  # a small profile/front nose: the nose keypoint's own pixels
        add(Piece([_circle(P["nose"], 0.13 * hr, 8)], FACE, app.skin, "nose", 0.202))
    for s, name in (("l", "left_eye"), ("r", "right_eye")):
        if D[name] - D["head"] > 0.3 * hr:
            add(Piece([_circle(P[name], 0.12 * hr, 8)], FACE, EYE_RGB, f"{s}_eye", 0.203))
    for s, name in (("l", "left_ear"), ("r", "right_ear")):
        if D[name] - D["head"] > -0.35 * hr:
            add(Piece([_circle(P[name], 0.2 * hr, 10)], FACE, app.skin, f"{s}_ear", 0.2005))
    if app.long_hair:
        top3 = sk.joints["head"] + T @ np.array([0, 0, -0.3 * hr])
        bot3 = T @ np.array([0, SHOULDER_Y + 0.09, -0.05])
        (t2, b2), dd = proj([top3, bot3])
        add(Piece([capsule(t2, b2, 0.95 * hr, 1.1 * hr)], HAIR, app.hair, "hair_back", float(dd[1])))
    if app.hat:
        hat_rgb = app.rgb(app.hat)
        ang = np.radians(pose.roll + pose.head_roll)
        t = np.linspace(np.pi, 2 * np.pi, 12)
        ca, sa = np.cos(ang), np.sin(ang)
        loc = np.stack([1.07 * hr * np.cos(t), 1.07 * hr * np.sin(t) - 0.12 * hr], 1)
        dome = P["head"] + loc @ np.array([[ca, sa], [-sa, ca]])
        brim_c = P["head"] + fwd2[0] * 0.6 * hr + down * (-0.12 * hr)
        brim = _ellipse(brim_c, hr * (0.5 + 0.3 * abs(np.sin(head_yaw))), 0.15 * hr, ang)
        add(Piece([dome, brim], HAT, hat_rgb, "hat", 0.21))

    # arms: skin, then sleeves over them
    for s in "lr":
        sh, el, wr, hd = P[f"{s}_shoulder"], P[f"{s}_elbow"], P[f"{s}_wrist"], P[f"{s}_hand"]
        d_up = 0.5 * (D[f"{s}_shoulder"] + D[f"{s}_elbow"])
        d_lo = 0.5 * (D[f"{s}_elbow"] + D[f"{s}_wrist"]) + 0.002
        r_up, r_el, r_wr = 0.031 * b.limb, 0.026 * b.limb, 0.021 * b.limb
        add(Piece([_circle(0.5 * (wr + hd), 0.025 * b.limb, 10)], ARM[s], app.skin, f"{s}_hand", d_lo + 0.001))
        if app.sleeves == "long":
            st = _stripe(sh, el, per, stripe_rgb) if stripe_rgb else None
            add(Piece([capsule(sh, el, r_up * 1.1, r_el * 1.1)], UPPER, upper_rgb, f"{s}_upper_arm", d_up, st))
            st = _stripe(el, wr, per, stripe_rgb) if stripe_rgb else None
            add(Piece([capsule(el, wr, r_el * 1.1, r_wr * 1.1)], UPPER, upper_rgb, f"{s}_forearm", d_lo, st))
        else:
            add(Piece([capsule(sh, el, r_up, r_el)], ARM[s], app.skin, f"{s}_upper_arm", d_up))
            add(Piece([capsule(el, wr, r_el, r_wr)], ARM[s], app.skin, f"{s}_forearm", d_lo))
            mid = sh + 0.55 * (el - sh)
            st = _stripe(sh, el, per, stripe_rgb) if stripe_rgb else None
            add(Piece([capsule(sh, mid, r_up * 1.2, r_up * 1.15)], UPPER, upper_rgb, f"{s}_upper_arm", d_up + 1e-4, st))

    # legs: skin or cloth per segment, then shorts/skirt/pelvis and shoes
    trousers = app.lower_kind == "trousers"
    for s in "lr":
        hp, kn, an, toe = P[f"{s}_hip"], P[f"{s}_knee"], P[f"{s}_ankle"], P[f"{s}_toe"]
        d_th = legs_d[s]
        d_sh = 0.5 * (D[f"{s}_knee"] + D[f"{s}_ankle"]) - 0.03
        r_hp, r_kn, r_an = 0.05 * b.limb * b.hip ** 0.5, 0.037 * b.limb, 0.028 * b.limb
        cls_leg, rgb_leg = (PANTS, lower_rgb) if trousers else (LEG[s], app.skin)
        add(Piece([capsule(hp, kn, r_hp, r_kn)], cls_leg, rgb_leg, f"{s}_thigh", d_th))
        add(Piece([capsule(kn, an, r_kn * (1.05 if trousers else 1), r_an * (1.2 if trousers else 1))], cls_leg,
                  rgb_leg, f"{s}_shin", d_sh))
        if app.lower_kind == "shorts":
            mid = hp + 0.55 * (kn - hp)
            add(Piece([capsule(hp, mid, r_hp * 1.12, r_kn * 1.2)], PANTS, lower_rgb, f"{s}_thigh", d_th + 1e-4))
        sole = np.array([0.0, 0.018])
        add(Piece([capsule(an + sole * 0.5, toe + sole, 0.024 * b.limb)], SHOE[s], app.shoes, f"{s}_shoe",
                  d_sh + 0.002))
    if app.lower_kind == "skirt":
        j = sk.joints
        pts = []
        for s, side in (("l", 1.0), ("r", -1.0)):
            hip3, knee3, ank3 = j[f"{s}_hip"], j[f"{s}_knee"], j[f"{s}_ankle"]
            hem = knee3 + 0.45 * (ank3 - knee3) if app.skirt_long else hip3 + 0.8 * (knee3 - hip3)
            for z in (-0.07, 0.07):
                pts.append([side * 0.1 * b.hip, -0.05, z])
                pts.append(hem + np.array([side * 0.06, 0.0, z * 1.3]))
        hull = convex_hull(proj(pts)[0])
        add(Piece([hull], SKIRT, lower_rgb, "skirt", skirt_depth))
    else:
        pts = [[side * 0.1 * b.hip, y, z] for side in (1, -1) for y in (-0.06, 0.07) for z in (-0.07, 0.07)]
        add(Piece([convex_hull(proj(pts)[0])], PANTS, lower_rgb, "pelvis", -0.025))

    # accessories (LIP has no bag class: their pixels are background, as in the real labels)
    if app.backpack:
        pts = [T @ np.array([x, y, z]) for x in (-0.085, 0.085) for y in (-0.27, -0.06) for z in (-0.065, -0.13)]
        hull = convex_hull(proj(pts)[0])
        _, dpk = proj([T @ np.array([0, -0.16, -0.1])])
        bp_rgb = app.rgb(app.backpack)
        add(Piece([hull], BG, bp_rgb, "backpack", float(dpk[0])))
        if cy > 0.25:  # straps on the chest when the front is visible
            straps = []
            for side in (1, -1):
                a3 = T @ np.array([side * 0.065, SHOULDER_Y - 0.005, 0.06])
                b3 = T @ np.array([side * 0.08, -0.09, 0.065])
                a2, b2 = proj([a3, b3])[0]
                straps.append(capsule(a2, b2, 0.013))
            add(Piece(straps, BG, bp_rgb, "strap", torso_depth + 0.001))
    if app.bag:
        s = app.bag_side
        hd = P[f"{s}_hand"]
        w, h = 0.11, 0.085
        body = np.array([[-w / 2, 0.03], [w / 2, 0.03], [w / 2 * 0.9, 0.03 + h], [-w / 2 * 0.9, 0.03 + h]]) + hd
        handle = capsule(hd + np.array([-0.03, 0.035]), hd, 0.008)
        handle2 = capsule(hd + np.array([0.03, 0.035]), hd, 0.008)
        add(Piece([body, handle, handle2], BG, app.rgb(app.bag), "bag", D[f"{s}_hand"] + 0.01))

    kp_xy = np.stack([P[n] for n in _KP_SOURCES])
    kp_d = np.array([D[n] for n in _KP_SOURCES])
    wb_xy, wb_parts, wb_labelled = wholebody_points(P, face_frame, b.limb)
    return Figure(pieces, kp_xy, kp_d, app, pose, {"head_r": hr, "wb_xy": wb_xy, "wb_parts": wb_parts,
                                                   "wb_labelled": wb_labelled})


# ----------------------------------------------------------------------------- whole-body points
# COCO-WholeBody's 68 face points in the face ellipse's unit frame (x across, image-left = the
# subject's right as in a frontal photograph; y down), in the iBUG-68 order its annotations use:
# jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67.
def _face_template() -> np.ndarray:
    t = np.linspace(0.0, np.pi, 17)
    jaw = np.stack([-0.95 * np.cos(t), 0.1 + 0.85 * np.sin(t)], 1)
    brow_x = np.linspace(-0.75, -0.15, 5)
    brows = np.concatenate([np.stack([brow_x, -0.38 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], 1),
                            np.stack([-brow_x[::-1], -0.38 - 0.06 * np.sin(np.linspace(0, np.pi, 5))], 1)])
    nose = np.array([[0, -0.25], [0, -0.12], [0, 0.0], [0, 0.12], [-0.2, 0.22], [-0.1, 0.25], [0, 0.27],
                     [0.1, 0.25], [0.2, 0.22]])
    eye = np.array([[-0.18, 0.0], [-0.06, -0.06], [0.06, -0.06], [0.18, 0.0], [0.06, 0.05], [-0.06, 0.05]])
    right_eye = eye + [-0.4, -0.15]
    left_eye = np.array([[-0.18, 0.0], [-0.06, -0.06], [0.06, -0.06], [0.18, 0.0], [0.06, 0.05], [-0.06, 0.05]])
    left_eye = left_eye + [0.4, -0.15]
    mouth = np.array([[-0.35, 0.45], [-0.2, 0.4], [-0.08, 0.38], [0, 0.39], [0.08, 0.38], [0.2, 0.4], [0.35, 0.45],
                      [0.2, 0.53], [0.08, 0.56], [0, 0.57], [-0.08, 0.56], [-0.2, 0.53],
                      [-0.25, 0.45], [-0.1, 0.43], [0, 0.43], [0.1, 0.43], [0.25, 0.45], [0.1, 0.49], [0, 0.5],
                      [-0.1, 0.49]])
    return np.concatenate([jaw, brows, nose, right_eye, left_eye, mouth])


FACE_TEMPLATE = _face_template()  # (68, 2)
WB_EXTRA = 6 + 68 + 21 + 21  # points after the 17 body keypoints


def wholebody_points(P: dict[str, np.ndarray], face_frame, limb: float
                     ) -> tuple[np.ndarray, tuple[frozenset[str], ...], np.ndarray]:
    """The 116 COCO-WholeBody points after the body's 17 (feet, face, left hand, right hand) where
    the figure draws them: on the shoe capsules, on the face ellipse, fanned over the hand discs.
    Returns (116, 2) image-unit points, the parts whose pixels show each point, and which points
    are labelled at all (no face points when the face is turned away and not drawn)."""
    xy = np.zeros((WB_EXTRA, 2))
    parts: list[frozenset[str]] = []
    labelled = np.ones(WB_EXTRA, bool)
    sole = np.array([0.0, 0.018])
    i = 0
    for s in "lr":  # big toe, small toe, heel (COCO-WholeBody's foot order: left side first)
        an, toe = P[f"{s}_ankle"] + sole * 0.5, P[f"{s}_toe"] + sole
        d = toe - an
        d = d / max(float(np.hypot(*d)), 1e-9)
        perp = np.array([-d[1], d[0]])
        r = 0.024 * limb
        xy[i:i + 3] = [toe + d * 0.6 * r + perp * 0.3 * r, toe + perp * -0.5 * r, an - d * 0.7 * r]
        parts += [frozenset({f"{s}_shoe"})] * 3
        i += 3
    if face_frame is not None:
        c, rx, ry, ang = face_frame
        ca, sa = np.cos(ang), np.sin(ang)
        xy[i:i + 68] = (FACE_TEMPLATE * (rx, ry)) @ np.array([[ca, sa], [-sa, ca]]) + c
    else:
        labelled[i:i + 68] = False
    parts += [frozenset({"face", "nose", "l_eye", "r_eye"})] * 68
    i += 68
    for s, side in (("l", 1.0), ("r", -1.0)):  # root, then thumb, fore, middle, ring, pinky (4 each)
        wr, hd = P[f"{s}_wrist"], P[f"{s}_hand"]
        centre, r = 0.5 * (wr + hd), 0.025 * limb
        d = hd - wr
        d = d / max(float(np.hypot(*d)), 1e-9)
        perp = np.array([-d[1], d[0]]) * side
        xy[i] = centre - d * 0.8 * r
        for f, spread in enumerate((0.9, 0.45, 0.0, -0.4, -0.8)):
            fd = d * np.cos(spread) + perp * np.sin(spread)
            for j in range(4):
                xy[i + 1 + 4 * f + j] = centre - d * 0.3 * r + fd * (0.35 + 0.2 * j) * r
        parts += [frozenset({f"{s}_hand"})] * 21
        i += 21
    return xy, tuple(parts), labelled


def _joint_name(keypoint: str) -> str:
    """COCO keypoint name -> skeleton joint name (``left_wrist`` -> ``l_wrist``; head points keep theirs)."""
    side, _, part = keypoint.partition("_")
    return keypoint if part in ("", "eye", "ear") else f"{side[0]}_{part}"


_KP_SOURCES = tuple(_joint_name(n) for n in COCO_KEYPOINTS)
