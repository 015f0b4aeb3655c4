"""MPII Human Pose in the json layout of HRNet/mmpose (``mpii_{train,val}.json``).

Card roles (``format: mpii_json``): ``annotations`` (the json list), ``images`` (folder),
optional ``head_boxes`` (``mpii_gt_val.mat`` with ``headboxes_src``) for PCKh.

Each record is ``{image, center [x, y], scale, joints [[x, y]] * 16, joints_vis [0/1] * 16}``
in MATLAB's 1-based pixel coordinates, ``scale`` = person height / 200 px. Conventions
(HRNet's ``MPIIDataset``, mmpose's ``MpiiDataset``):

- the centre moves down by ``15 * scale`` px so that the crop keeps the feet, then both
  centre and joints become 0-based (``- 1``);
- the person box is the square of side ``200 * scale`` around that centre; the top-down
  transform then pads it by 1.25 like every other box;
- ``head_size`` = 0.6 x the diagonal of the head box (PCKh normaliser, ``SC_BIAS``).

Unlabelled joints (``joints_vis == 0``, stored as ``[-1, -1]``) become ``(0, 0, 0)``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard, DatasetCardError
from hcbench.data.readers.coco import _is_num, load_json
from hcbench.data.types import DataFormatError, DatasetSplit, KeypointMeta, PoseInstance
from hcbench.registry import DATASETS

PIXEL_STD = 200.0  # MPII scales are person heights in units of 200 px
CENTER_SHIFT = 15.0  # px (x scale) the centre moves down, as in HRNet/mmpose
SC_BIAS = 0.6  # head size = SC_BIAS x head-box diagonal (official PCKh evaluation)


def _check_record(rec: Any, i: int, path: Path, k: int) -> None:
    label = f"#{i}" + (f" image={rec.get('image')}" if isinstance(rec, dict) else "")
    if not isinstance(rec, dict):
        raise DataFormatError(path, "record is not an object", record=label)
    for key in ("image", "center", "scale", "joints", "joints_vis"):
        if key not in rec:
            raise DataFormatError(path, f"record has no '{key}'", record=label)
    if not isinstance(rec["image"], str) or not rec["image"]:
        raise DataFormatError(path, f"image {rec['image']!r} is not a file name", record=label)
    c = rec["center"]
    if not (isinstance(c, list) and len(c) == 2 and all(_is_num(v) for v in c)):
        raise DataFormatError(path, f"center {c!r} is not 2 finite numbers", record=label)
    if not (_is_num(rec["scale"]) and rec["scale"] > 0):
        raise DataFormatError(path, f"scale {rec['scale']!r} is not a positive number", record=label)
    j, v = rec["joints"], rec["joints_vis"]
    if not isinstance(j, list) or len(j) != k:
        n = len(j) if isinstance(j, list) else type(j).__name__
        raise DataFormatError(path, f"joints has {n} entries for a {k}-keypoint dataset", record=label)
    if not all(isinstance(p, list) and len(p) == 2 and all(_is_num(x) for x in p) for p in j):
        raise DataFormatError(path, "joints must be [x, y] pairs of finite numbers", record=label)
    if not isinstance(v, list) or len(v) != k or not all(_is_num(x) for x in v):
        n = len(v) if isinstance(v, list) else type(v).__name__
        raise DataFormatError(path, f"joints_vis has {n} entries for a {k}-keypoint dataset", record=label)


def read_head_sizes(mat_file: str | Path, num_records: int | None = None) -> np.ndarray:
    """PCKh normalisers (``SC_BIAS`` x head-box diagonal) from ``mpii_gt_val.mat``, one per record."""
    from scipy.io import loadmat

    mat_file = Path(mat_file)
    if not mat_file.is_file():
        raise FileNotFoundError(f"{mat_file}: no such file")
    try:
        mat = loadmat(str(mat_file))
    except Exception as e:  # scipy raises several types for a non-.mat file
        raise DataFormatError(mat_file, f"not a MATLAB .mat file ({e})") from None
    boxes = mat.get("headboxes_src")
    if boxes is None or boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
        shape = None if boxes is None else boxes.shape
        raise DataFormatError(mat_file, f"expected 'headboxes_src' of shape (2, 2, N), got {shape}")
    boxes = np.transpose(boxes, (2, 0, 1)).astype(np.float64)  # (N, corner, xy)
    if num_records is not None and len(boxes) != num_records:
        raise DataFormatError(mat_file, f"{len(boxes)} head boxes for {num_records} annotation records")
    return np.linalg.norm(boxes[:, 1] - boxes[:, 0], axis=1) * SC_BIAS


def _image_id(name: str, fallback: int) -> int:
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else fallback


def read_mpii_json(
    ann_file: str | Path,
    image_dir: str | Path,
    meta: KeypointMeta,
    *,
    name: str = "mpii",
    split: str = "val",
    head_boxes: str | Path | None = None,
    limit: int | None = None,
) -> DatasetSplit[PoseInstance]:
    """Read an MPII json list into top-down instances (0-based pixels).

    ``ann_id`` is the record's index in the file (the order of the head boxes in the
    ``.mat``); ``image_id`` is the numeric image name. ``extra``: ``head_boxes`` (path or
    None); per instance ``extra`` keeps the file's ``center``/``scale``.
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    records = load_json(ann_file)
    if not isinstance(records, list):
        got = f"an object with keys {sorted(records)[:8]}" if isinstance(records, dict) else type(records).__name__
        raise DataFormatError(ann_file, f"expected a JSON list of MPII person records, got {got}")
    k = meta.num_keypoints
    for i, rec in enumerate(records):
        _check_record(rec, i, ann_file, k)
    head = read_head_sizes(head_boxes, len(records)) if head_boxes is not None else None
    n = len(records) if limit is None else min(limit, len(records))
    samples = []
    for i, rec in enumerate(records[:n]):
        scale = float(rec["scale"])
        center = np.asarray(rec["center"], dtype=np.float64)
        if center[0] != -1:  # -1 marks a missing centre in the original annotations
            center[1] += CENTER_SHIFT * scale
        center -= 1.0
        side = scale * PIXEL_STD
        vis = np.asarray(rec["joints_vis"], dtype=np.float32)
        kp = np.zeros((k, 3), dtype=np.float32)
        kp[:, :2] = np.asarray(rec["joints"], dtype=np.float64) - 1.0
        kp[:, 2] = vis
        kp[vis <= 0] = 0.0
        samples.append(PoseInstance(
            image=image_dir / rec["image"], image_id=_image_id(rec["image"], i),
            bbox=np.array([center[0] - side / 2, center[1] - side / 2, side, side], dtype=np.float32),
            keypoints=kp, ann_id=i, head_size=None if head is None else float(head[i]),
            extra={"center": [float(v) for v in rec["center"]], "scale": scale}))
    files = [ann_file] + ([Path(head_boxes)] if head_boxes is not None else [])
    return DatasetSplit(name=name, split=split, family="pose", samples=samples, meta=meta, files=files,
                        extra={"head_boxes": None if head_boxes is None else Path(head_boxes),
                               "num_records": len(records)})


def mpii_record(image: str, keypoints: np.ndarray, bbox: Sequence[float]) -> dict:
    """A file-format record for 0-based ``keypoints`` (K, 3) and a 0-based ``[x, y, w, h]`` box.

    ``scale = max(w, h) / 200`` and the centre is shifted back, so that reading the record
    gives the square box of side ``max(w, h)`` centred on the box and the same keypoints.
    """
    x, y, w, h = (float(v) for v in bbox)
    scale = max(w, h) / PIXEL_STD
    kp = np.asarray(keypoints, dtype=np.float64)
    vis = (kp[:, 2] > 0).astype(int)
    joints = np.where(vis[:, None] > 0, kp[:, :2] + 1.0, -1.0)  # 1-based; -1 marks unlabelled
    return {
        "joints_vis": vis.tolist(),
        "joints": joints.tolist(),
        "image": image,
        "scale": scale,
        "center": [x + w / 2 + 1.0, y + h / 2 + 1.0 - CENTER_SHIFT * scale],
    }


def write_mpii_json(path: str | Path, records: Sequence[dict], meta: KeypointMeta) -> Path:
    """Write records in the MPII json layout (file coordinates, 1-based), validated, atomically."""
    from hcbench.io import atomic_write_text

    path = Path(path)
    records = [dict(r) for r in records]
    for i, rec in enumerate(records):
        _check_record(rec, i, path, meta.num_keypoints)
    atomic_write_text(path, json.dumps(records))
    return path


def write_mpii_head_boxes(path: str | Path, head_boxes: np.ndarray, keypoints: np.ndarray, meta: KeypointMeta) -> Path:
    """Write an ``mpii_gt_val.mat``-layout file: 0-based inputs, stored 1-based like the original.

    ``head_boxes``: (N, 2, 2) ``[[x1, y1], [x2, y2]]``; ``keypoints``: (N, K, 3).
    Fields: ``headboxes_src`` (2, 2, N), ``pos_gt_src`` (K, 2, N), ``jnt_missing`` (K, N),
    ``dataset_joints`` (joint names).
    """
    import io

    from scipy.io import savemat

    from hcbench.io import atomic_write_bytes

    hb = np.asarray(head_boxes, dtype=np.float64)
    kp = np.asarray(keypoints, dtype=np.float64)
    if hb.ndim != 3 or hb.shape[1:] != (2, 2) or kp.shape != (len(hb), meta.num_keypoints, 3):
        raise ValueError(f"head_boxes must be (N, 2, 2) and keypoints (N, {meta.num_keypoints}, 3); "
                         f"got {hb.shape} and {kp.shape}")
    names = np.empty((1, meta.num_keypoints), dtype=object)
    names[0, :] = list(meta.keypoint_names)
    buf = io.BytesIO()
    savemat(buf, {
        "headboxes_src": np.transpose(hb + 1.0, (1, 2, 0)),
        "pos_gt_src": np.transpose(kp[..., :2] + 1.0, (1, 2, 0)),
        "jnt_missing": (kp[..., 2] <= 0).astype(np.uint8).T,
        "dataset_joints": names,
    })
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


@DATASETS.register("mpii_json")
def read(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit[PoseInstance]:
    """One split of an MPII-json dataset; head sizes when the split lists ``head_boxes``."""
    root = Path(root)
    files = card.split(split).files
    for role in ("annotations", "images"):
        if role not in files:
            raise DatasetCardError(f"dataset card {card.name!r}: split {split!r} lists no '{role}' file")
    meta = card.meta()
    assert isinstance(meta, KeypointMeta)
    head = root / files["head_boxes"] if "head_boxes" in files else None
    return read_mpii_json(root / files["annotations"], root / files["images"], meta, name=card.name,
                          split=split, head_boxes=head, limit=limit)
