"""``hcbench score``: metrics from prediction files on disk, with clear errors for mismatched inputs.

Each ``score_*`` function reads and validates its files, calls the pure metric in
``hcbench.metrics`` and returns a dict of fractions ready for ``json.dumps`` (undefined values such
as the IoU of a class absent from both maps become ``None``; -1 keeps its COCO meaning of "no
ground truth in this setting"). Bad input raises :class:`hcbench.data.types.DataFormatError`
naming the file and, where there is one, the record.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.types import DataFormatError, DetectionSample

POSE_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
REID_KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
ATTRIBUTE_KEYS = ("mA", "accuracy", "precision", "recall", "F1")
REID_ARRAYS = ("query_feats", "gallery_feats", "query_pids", "gallery_pids", "query_camids", "gallery_camids")


# --------------------------------------------------------------------------- helpers
def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _exists(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file ({what})")
    return path


def _read_json(path: Path, what: str) -> Any:
    _exists(path, what)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON ({what}): {e}") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({what}): {e}") from None


def _load_array(path: Path, what: str) -> np.ndarray:
    _exists(path, what)
    try:
        arr = np.load(path, allow_pickle=False)
        if isinstance(arr, np.lib.npyio.NpzFile):  # an hcbench predictions .npz: its "probs" (or "labels")
            with arr:
                key = next((k for k in ("probs", "labels", "scores") if k in arr.files), None)
                if key is None:
                    raise DataFormatError(path, f"{what}: an .npz needs a 'probs' array, found {arr.files}")
                return arr[key]
        return arr
    except ValueError as e:  # pickled object arrays, malformed headers
        raise DataFormatError(path, f"not a plain .npy array ({what}): {e}") from None
    except OSError as e:
        raise DataFormatError(path, f"cannot read ({what}): {e}") from None


def _check_finite(a: np.ndarray, path: Path, name: str) -> None:
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise DataFormatError(path, f"NaN or inf in {name}", record=f"{name}{list(bad.tolist())}")


# --------------------------------------------------------------------------- pose
def _sigmas(spec: str) -> Any:
    from hcbench.metrics.pose import SIGMAS

    if spec.lower() in SIGMAS:
        return spec.lower()
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"--sigmas {spec!r}: not one of {sorted(SIGMAS)} and no such file")
    text = path.read_text(encoding="utf-8").strip()
    try:
        values = json.loads(text) if text.startswith("[") else [float(v) for v in text.replace(",", " ").split()]
    except (json.JSONDecodeError, ValueError) as e:
        raise DataFormatError(path, f"expected a JSON list or whitespace/comma-separated numbers: {e}") from None
    if not isinstance(values, list) or not values:
        raise DataFormatError(path, "expected a non-empty list of sigmas")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise DataFormatError(path, "sigmas must be numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise DataFormatError(path, "sigmas must be positive finite numbers")
    return values


def score_pose(gt: Path, pred: Path, sigmas: str = "coco", backend: str = "pycocotools",
               crowd: bool = False) -> dict[str, float]:
    """OKS AP/AR of COCO keypoint results ``pred`` against the COCO keypoint json ``gt``;
    ``crowd``: the CrowdPose protocol (keys ``AP AP50 AP75 AR AR50 AR75 APeasy APmedium APhard``)."""
    from hcbench.metrics.pose import (
        CROWD_KEYS,
        check_keypoint_results,
        keypoint_ap,
        load_coco_gt,
        num_keypoints,
        resolve_sigmas,
    )

    sig = _sigmas(sigmas)
    data = load_coco_gt(_exists(Path(gt), "ground truth"))
    k = num_keypoints(data, source=gt)
    n_sig = len(resolve_sigmas(sig))
    if n_sig != k:
        raise ValueError(f"{n_sig} OKS sigmas ({sigmas}) but {gt} has {k} keypoints per person")
    results = _read_json(Path(pred), "predictions")
    check_keypoint_results(results, data, source=pred)
    out = keypoint_ap(data, results, sigmas=sig, backend=backend, crowd=crowd)
    return _jsonable({key: out[key] for key in (CROWD_KEYS if crowd else POSE_KEYS)})


# --------------------------------------------------------------------------- parsing
def _label_map(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataFormatError(path, f"expected a single-channel label map, got PNG mode {im.mode}")
            return np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise DataFormatError(path, f"not a readable PNG: {e}") from None


def score_parsing(gt: Path, pred: Path, num_classes: int, ignore_index: int = 255) -> dict[str, Any]:
    """mIoU etc. of the PNG label maps under ``pred`` against those under ``gt`` (same relative names)."""
    from hcbench.metrics.parsing import ConfusionMatrix, parsing_metrics

    gt, pred = Path(gt), Path(pred)
    for d, what in ((gt, "ground-truth folder"), (pred, "prediction folder")):
        if not Path(d).is_dir():
            raise FileNotFoundError(f"{d}: not a folder ({what})")
    gt_files = sorted(p.relative_to(gt) for p in gt.rglob("*.png"))
    if not gt_files:
        raise DataFormatError(gt, "no PNG label maps found (searched recursively)")
    extra = sorted(set(p.relative_to(pred) for p in pred.rglob("*.png")) - set(gt_files))
    if extra:
        raise DataFormatError(pred / extra[0], f"prediction without a ground-truth counterpart in {gt} "
                              f"({len(extra)} such file(s))")
    conf = ConfusionMatrix(num_classes, ignore_index)
    for rel in gt_files:
        p_path = pred / rel
        if not p_path.exists():
            raise DataFormatError(p_path, f"missing prediction for ground truth {gt / rel}")
        g = _label_map(gt / rel)
        p = _label_map(p_path)
        if g.shape != p.shape:
            raise DataFormatError(p_path, f"size {p.shape[1]}x{p.shape[0]} differs from the ground truth's "
                                  f"{g.shape[1]}x{g.shape[0]} ({gt / rel})")
        bad = (g >= num_classes) & (g != ignore_index)
        if bad.any():
            raise DataFormatError(gt / rel, f"ground-truth label(s) {np.unique(g[bad])[:10].tolist()} outside "
                                  f"0..{num_classes - 1} and not ignore_index {ignore_index}")
        bad = (p >= num_classes) & (g != ignore_index)
        if bad.any():
            raise DataFormatError(p_path, f"predicted label(s) {np.unique(p[bad])[:10].tolist()} outside "
                                  f"0..{num_classes - 1}")
        conf.update(p, g)
    return _jsonable(parsing_metrics(conf))


# --------------------------------------------------------------------------- reid
def score_reid(pred: Path, metric: str = "cosine") -> dict[str, float]:
    """mAP/CMC/mINP from a .npz holding query/gallery features, pids and camids."""
    from hcbench.metrics.reid import evaluate_reid

    pred = _exists(Path(pred), "ReID features")
    try:
        npz = np.load(pred, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataFormatError(pred, f"not a readable .npz: {e}") from None
    with npz:
        missing = [k for k in REID_ARRAYS if k not in npz.files]
        if missing:
            raise DataFormatError(pred, f"missing array(s) {missing}; the file has {sorted(npz.files)}")
        try:
            a = {k: npz[k] for k in REID_ARRAYS}
        except ValueError as e:
            raise DataFormatError(pred, f"unreadable array (object arrays are refused): {e}") from None
    for side in ("query", "gallery"):
        f = a[f"{side}_feats"]
        if f.ndim != 2:
            raise DataFormatError(pred, f"{side}_feats must be 2-D (num, dim), got shape {f.shape}")
        if not np.issubdtype(f.dtype, np.number):
            raise DataFormatError(pred, f"{side}_feats has dtype {f.dtype}, expected numbers")
        _check_finite(f, pred, f"{side}_feats")
        for what in ("pids", "camids"):
            ids = a[f"{side}_{what}"]
            if ids.shape != (f.shape[0],):
                raise DataFormatError(pred, f"{side}_{what} has shape {ids.shape}, expected ({f.shape[0]},) "
                                      f"to match {side}_feats")
            if not np.issubdtype(ids.dtype, np.integer):
                raise DataFormatError(pred, f"{side}_{what} has dtype {ids.dtype}, expected integers")
    if a["query_feats"].shape[1] != a["gallery_feats"].shape[1]:
        raise DataFormatError(pred, f"query_feats dim {a['query_feats'].shape[1]} != gallery_feats dim "
                              f"{a['gallery_feats'].shape[1]}")
    try:
        out = evaluate_reid(a["query_feats"], a["gallery_feats"], a["query_pids"], a["gallery_pids"],
                            a["query_camids"], a["gallery_camids"], metric=metric)
    except ValueError as e:
        raise DataFormatError(pred, str(e)) from None
    return _jsonable({k: out[k] for k in REID_KEYS})


# --------------------------------------------------------------------------- attributes
def score_attributes(gt: Path, pred: Path, threshold: float = 0.5) -> dict[str, float]:
    """mA and instance metrics of N x A scores ``pred`` against N x A {0,1} labels ``gt`` (.npy)."""
    from hcbench.metrics.attributes import attribute_metrics

    g = _load_array(Path(gt), "ground-truth labels")
    p = _load_array(Path(pred), "attribute scores")
    if g.ndim != 2:
        raise DataFormatError(gt, f"expected an N x A array, got shape {g.shape}")
    if p.shape != g.shape:
        raise DataFormatError(pred, f"shape {p.shape} differs from the ground truth's {g.shape} ({gt})")
    if not np.issubdtype(p.dtype, np.number) or not np.issubdtype(g.dtype, np.number):
        raise DataFormatError(pred if not np.issubdtype(p.dtype, np.number) else gt, "expected a numeric array")
    _check_finite(p, Path(pred), "scores")
    bad = ~np.isin(g, (0, 1))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataFormatError(gt, f"label {g[i, j].item()!r} is not 0 or 1", record=f"row {i}, attribute {j}")
    return _jsonable({k: v for k, v in attribute_metrics(g, p, threshold).items() if k in ATTRIBUTE_KEYS})


# --------------------------------------------------------------------------- detection
def _parse_odgt_line(obj: Any, path: Path, record: str, images: Path) -> DetectionSample:
    """Fallback CrowdHuman record parser (used only if the reader module is unavailable)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("ID"), str):
        raise DataFormatError(path, "expected an object with a string 'ID'", record=record)
    boxes, visible, ignore = [], [], []
    for j, b in enumerate(obj.get("gtboxes", [])):
        try:
            fbox = [float(v) for v in b["fbox"]]
            assert len(fbox) == 4 and all(math.isfinite(v) for v in fbox)
        except (KeyError, TypeError, ValueError, AssertionError):
            raise DataFormatError(path, f"gtboxes[{j}].fbox must be 4 finite numbers", record=record) from None
        if b.get("tag") != "person" or int((b.get("extra") or {}).get("ignore", 0) or 0) == 1:
            ignore.append(fbox)
        else:
            boxes.append(fbox)
            visible.append([float(v) for v in b.get("vbox", fbox)])
    arr = lambda rows: np.asarray(rows, np.float32).reshape(-1, 4)  # noqa: E731
    return DetectionSample(images / f"{obj['ID']}.jpg", obj["ID"], arr(boxes), arr(visible), arr(ignore))


def _read_odgt(path: Path) -> list[DetectionSample]:
    try:  # the dataset reader's own record parser, when present, so both agree on the format
        from hcbench.data.readers.detection import parse_odgt_record as parse
    except ImportError:
        parse = _parse_odgt_line
    images = path.parent / "Images"
    samples = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            record = f"line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"not JSON: {e}", record=record) from None
            samples.append(parse(obj, path, record, images))
    return samples


def _image_size(sample: DetectionSample) -> tuple[int, int]:
    """(width, height) for clipping as the CrowdHuman toolkit does, when the image is on disk."""
    if sample.width > 0 and sample.height > 0:
        return sample.width, sample.height
    if sample.image.is_file():
        from PIL import Image

        with Image.open(sample.image) as im:  # reads the header only
            return im.size
    return 0, 0


def score_detection(gt: Path, pred: Path) -> dict[str, float]:
    """AP / MR-2 / JI (CrowdHuman protocol) of COCO-style box results against a CrowdHuman .odgt.

    Boxes are clipped to the image as the official toolkit does when the images sit next to the
    odgt in ``Images/<ID>.jpg`` (the odgt itself holds no image sizes); otherwise unclipped.
    """
    from hcbench.metrics.detection import crowdhuman_eval

    gt, pred = Path(gt), Path(pred)
    samples = _read_odgt(_exists(gt, "CrowdHuman ground truth"))
    if not samples:
        raise DataFormatError(gt, "no records")
    gts = []
    for s in samples:
        w, h = _image_size(s)
        gts.append({"image_id": s.image_id, "boxes": s.boxes, "ignore": s.ignore, "width": w, "height": h})
    known = {s.image_id for s in samples}
    results = _read_json(pred, "detections")
    if not isinstance(results, list):
        raise DataFormatError(pred, "expected a JSON list of {image_id, bbox, score}")
    per_image: dict[str, list[list[float]]] = {}
    for i, r in enumerate(results):
        if not isinstance(r, dict) or not all(k in r for k in ("image_id", "bbox", "score")):
            raise DataFormatError(pred, "expected an object with image_id, bbox, score", record=i)
        if r["image_id"] not in known:
            raise DataFormatError(pred, f"unknown image id {r['image_id']!r} (not in {gt.name})", record=i)
        try:
            row = [float(v) for v in r["bbox"]] + [float(r["score"])]
        except (TypeError, ValueError):
            raise DataFormatError(pred, "bbox and score must be numbers", record=i) from None
        if len(row) != 5:
            raise DataFormatError(pred, f"bbox has {len(row) - 1} values, expected 4 [x, y, w, h]", record=i)
        if not all(math.isfinite(v) for v in row):
            raise DataFormatError(pred, "NaN or inf in bbox or score", record=i)
        per_image.setdefault(r["image_id"], []).append(row)
    dets = {k: np.asarray(v, dtype=np.float64) for k, v in per_image.items()}
    return _jsonable(crowdhuman_eval(gts, dets))
