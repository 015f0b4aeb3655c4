"""Pose metrics: OKS keypoint AP (COCO, AIC, CrowdPose variant) and MPII PCKh.

OKS AP is computed by :mod:`hcbench.metrics.oks` (backend ``"hcbench"``, the default: a vectorised
re-implementation of ``pycocotools.cocoeval.COCOeval`` giving the same numbers several times faster),
or by pycocotools itself or faster-coco-eval (``backend=``); this module prepares the inputs the way
the field's evaluators expect them:

* ground truth without an ``area`` field (AIC, CrowdPose) uses the CrowdPose/xtcocotools rule
  ``area = 0.53 * bbox_w * bbox_h`` both as the OKS scale and for the area ranges (mmpose's
  ``use_area=False``); ground truth without ``iscrowd``/``num_keypoints`` gets 0 / the number of
  labelled keypoints;
* ``crowd=True`` is the CrowdPose protocol (Jeff-sjtu/CrowdPose ``crowdposetools``, also
  xtcocotools and faster-coco-eval ``keypoints_crowd``): AP/AR at maxDets 20 without area ranges,
  plus AP on the easy/medium/hard images split by ``crowdIndex``. The thresholds are those of the
  official code, ``< 0.2`` easy, ``< 0.8`` medium, else hard (the paper's text says 0.1; published
  numbers come from the code). AP of a split is the mean of the whole precision array as the
  official code takes it, without its rounding to 4 decimals.

A metric whose setting has no (non-ignored) ground truth is ``-1`` (the COCO convention, e.g. APm on
a set without medium persons, or APhard with no hard image). Metrics are fractions in [0, 1].
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.types import DataFormatError

# OKS sigmas as the field uses them (mmpose ``configs/_base_/datasets/*.py``).
SIGMAS: dict[str, tuple[float, ...]] = {
    "coco": (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062,
             0.107, 0.107, 0.087, 0.087, 0.089, 0.089),
    # AI Challenger's own keypoint_eval.py deltas / 2
    "aic": (0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
            0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173),
    # crowdposetools computeOks: COCO body sigmas, head/neck = shoulder's .079
    "crowdpose": (0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087, 0.087, 0.089,
                  0.089, 0.079, 0.079),
    # mmpose "adapted from COCO" for MPII's 16 joints (MPII itself is scored with PCKh)
    "mpii": (0.089, 0.083, 0.107, 0.107, 0.083, 0.089, 0.026, 0.026, 0.026, 0.026, 0.062, 0.072,
             0.179, 0.179, 0.072, 0.062),
}

COCO_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
CROWD_KEYS = ("AP", "AP50", "AP75", "AR", "AR50", "AR75", "APeasy", "APmedium", "APhard")
CROWD_INDEX_BINS = (0.2, 0.8)  # official crowdposetools get_type_result(first=0.2, second=0.8)
AREA_PROXY = 0.53  # crowdposetools / xtcocotools: OKS scale when the annotation has no area
BACKENDS = ("hcbench", "pycocotools", "faster-coco-eval")
DEFAULT_BACKEND = "hcbench"

# MPII joint order (mmpose / the official annolist order)
MPII_JOINTS = ("r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "pelvis", "thorax",
               "upper_neck", "head_top", "r_wrist", "r_elbow", "r_shoulder", "l_shoulder",
               "l_elbow", "l_wrist")
_MPII_GROUPS = {"Head": (9,), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15),
                "Hip": (2, 3), "Knee": (1, 4), "Ankle": (0, 5)}
_MPII_EXCLUDED = (6, 7)  # pelvis and thorax are left out of the reported mean (mmpose, HRNet)


# --------------------------------------------------------------------------- inputs
def resolve_sigmas(spec: str | Sequence[float]) -> np.ndarray:
    """OKS sigmas from a dataset name in :data:`SIGMAS` or a sequence of floats."""
    if isinstance(spec, str):
        key = spec.lower()
        if key not in SIGMAS:
            raise ValueError(f"unknown sigmas {spec!r}; choose one of {sorted(SIGMAS)} or give the values")
        return np.asarray(SIGMAS[key], dtype=np.float64)
    arr = np.asarray(spec, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"sigmas must be positive finite numbers, got {arr.tolist()}")
    return arr


def load_coco_gt(gt: Mapping[str, Any] | str | Path, *, source: str | Path | None = None,
                 copy_: bool = True) -> dict:
    """A private deep copy of a COCO keypoint ground truth (a dict or the path of a JSON file),
    checked enough that pycocotools will not fail on it with an obscure error. ``copy_=False``
    returns a given dict itself (for readers that do not modify it)."""
    if isinstance(gt, (str, Path)):
        source = source or gt
        try:
            data = json.loads(Path(gt).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataFormatError(gt, f"not valid JSON: {e}") from None
    else:
        data = copy.deepcopy(dict(gt)) if copy_ else gt
    source = source or "<gt>"
    if not isinstance(data, dict):
        raise DataFormatError(source, "expected a COCO object with images/annotations/categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataFormatError(source, f"missing or non-list {key!r}")
    image_ids = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise DataFormatError(source, "image without an 'id'", record=f"images[{i}]")
        image_ids.add(img["id"])
    k = num_keypoints(data, source=source)
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations[{i}] (id {ann.get('id')})" if isinstance(ann, dict) else f"annotations[{i}]"
        if not isinstance(ann, dict):
            raise DataFormatError(source, "annotation is not an object", record=where)
        for key in ("id", "image_id", "category_id", "keypoints", "bbox"):
            if key not in ann:
                raise DataFormatError(source, f"annotation lacks {key!r}", record=where)
        if ann["image_id"] not in image_ids:
            raise DataFormatError(source, f"unknown image id {ann['image_id']!r}", record=where)
        if len(ann["keypoints"]) != 3 * k:
            raise DataFormatError(source, f"{len(ann['keypoints'])} keypoint values, expected {3 * k} "
                                  f"({k} keypoints x 3)", record=where)
        if len(ann["bbox"]) != 4:
            raise DataFormatError(source, "bbox must have 4 values [x, y, w, h]", record=where)
    return data


def num_keypoints(data: Mapping[str, Any], *, source: str | Path = "<gt>") -> int:
    """K from the person category's keypoint names, else from the first annotation."""
    for cat in data.get("categories", []):
        if isinstance(cat, dict) and cat.get("keypoints"):
            return len(cat["keypoints"])
    for ann in data.get("annotations", []):
        if isinstance(ann, dict) and "keypoints" in ann:
            return len(ann["keypoints"]) // 3
    raise DataFormatError(source, "cannot tell the number of keypoints (no category keypoint names, no annotation)")


def check_keypoint_results(results: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], *,
                           source: str | Path = "<results>") -> list[dict]:
    """Validate COCO keypoint results against ``gt``; return fresh copies (pycocotools mutates them)
    with the keypoints and score as floats."""
    kp, score = _check_results_fast(results, gt, source=source)
    # a shallow copy is enough: loadRes sets keys on each result, it changes no nested value
    return [{**r, "keypoints": row, "score": sc} for r, row, sc in zip(results, kp.tolist(), score.tolist(),
                                                                    strict=True)]


def _check_results_fast(results: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], *,
                        source: str | Path = "<results>") -> tuple[np.ndarray, np.ndarray]:
    """The results' keypoints (N, 3K) and scores (N,) as float arrays, checked at numpy speed; on
    any failure the record-by-record check runs to name the record at fault."""
    k = num_keypoints(gt)
    try:
        if not isinstance(results, (list, tuple)) or not all(isinstance(r, Mapping) for r in results):
            raise ValueError
        if not results:
            return np.zeros((0, 3 * k)), np.zeros(0)
        image_ids = {img["id"] for img in gt["images"]}
        cat_ids = {cat["id"] for cat in gt["categories"] if isinstance(cat, dict) and "id" in cat}
        if not ({r["image_id"] for r in results} <= image_ids and {r["category_id"] for r in results} <= cat_ids):
            raise ValueError
        rows = [r["keypoints"] for r in results]
        if any(not isinstance(row, (list, tuple)) or len(row) != 3 * k for row in rows):
            raise ValueError
        kp = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=3 * k * len(rows))
        kp = kp.reshape(len(rows), 3 * k)
        score = np.array([r["score"] for r in results], dtype=np.float64).reshape(-1)
        if not (np.isfinite(kp).all() and np.isfinite(score).all()):
            raise ValueError
    except (ValueError, TypeError, KeyError):
        _check_results_slow(results, gt, k, source)
        raise DataFormatError(source, "malformed keypoint results") from None
    return kp, score


def _check_results_slow(results: Any, gt: Mapping[str, Any], k: int, source: str | Path) -> None:
    if not isinstance(results, (list, tuple)):
        raise DataFormatError(source, "expected a JSON list of {image_id, category_id, keypoints, score}")
    image_ids = {img["id"] for img in gt["images"]}
    cat_ids = {cat["id"] for cat in gt["categories"] if isinstance(cat, dict) and "id" in cat}
    for i, r in enumerate(results):
        if not isinstance(r, Mapping):
            raise DataFormatError(source, "result is not an object", record=i)
        for key in ("image_id", "category_id", "keypoints", "score"):
            if key not in r:
                raise DataFormatError(source, f"result lacks {key!r}", record=i)
        if r["image_id"] not in image_ids:
            raise DataFormatError(source, f"unknown image id {r['image_id']!r} (not in the ground truth)", record=i)
        if r["category_id"] not in cat_ids:
            raise DataFormatError(source, f"unknown category id {r['category_id']!r}", record=i)
        kp = r["keypoints"]
        if not isinstance(kp, (list, tuple)) or len(kp) != 3 * k:
            n = len(kp) if isinstance(kp, (list, tuple)) else type(kp).__name__
            raise DataFormatError(source, f"{n} keypoint values, expected {3 * k} ({k} keypoints x 3)", record=i)
        try:
            finite = all(math.isfinite(float(v)) for v in kp) and math.isfinite(float(r["score"]))
        except (TypeError, ValueError):
            raise DataFormatError(source, "keypoints and score must be numbers", record=i) from None
        if not finite:
            raise DataFormatError(source, "NaN or inf in keypoints or score", record=i)


def _prepare_gt(data: dict, *, use_area: bool) -> dict:
    for ann in data["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "num_keypoints" not in ann:
            ann["num_keypoints"] = int(np.count_nonzero(np.asarray(ann["keypoints"])[2::3] > 0))
        if not use_area:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3]) * AREA_PROXY
    return data


# --------------------------------------------------------------------------- OKS AP
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # pycocotools prints progress to stdout; `hcbench score` prints JSON there.
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _build_eval(gt: dict, results: list[dict], sigmas: np.ndarray, backend: str):
    if backend == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        with _quiet():
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            if results:
                coco_dt = coco_gt.loadRes(results)
            else:  # loadRes indexes results[0]; an empty result set is an empty COCO
                coco_dt = COCO()
                coco_dt.dataset = {"images": list(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                                   "annotations": []}
                coco_dt.createIndex()
            ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        return ev
    if backend == "faster-coco-eval":
        from faster_coco_eval import COCO, COCOeval_faster

        def silent(*_a, **_k) -> None:
            return None

        coco_gt = COCO(gt, print_function=silent)
        coco_dt = coco_gt.loadRes(results)
        return COCOeval_faster(coco_gt, coco_dt, "keypoints", kpt_oks_sigmas=list(sigmas),
                               print_function=silent)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def keypoint_ap(gt: Mapping[str, Any] | str | Path, results: Sequence[Mapping[str, Any]], *,
                sigmas: Sequence[float] | str | None = None, backend: str = DEFAULT_BACKEND,
                crowd: bool = False, use_area: bool | None = None,
                results_source: str | Path = "<results>") -> dict[str, float]:
    """OKS keypoint AP/AR of COCO-format ``results`` against the COCO keypoint ground truth ``gt``.

    ``sigmas`` defaults to COCO's for 17 keypoints and CrowdPose's for ``crowd=True``; other
    keypoint sets need them named (e.g. ``"aic"``). ``use_area=None`` uses the annotations'
    ``area`` when every annotation has one and the protocol is not CrowdPose, else the 0.53·w·h
    box proxy. ``backend``: one of :data:`BACKENDS`; ``"hcbench"`` (default) and ``"pycocotools"``
    give identical numbers, faster-coco-eval agrees to ~1e-6. Returns :data:`COCO_KEYS` (or
    :data:`CROWD_KEYS` with ``crowd=True``). Neither input is modified. The results are validated
    here (errors name ``results_source`` and the record), so callers need not check them first.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    data = load_coco_gt(gt, copy_=backend != "hcbench")
    k = num_keypoints(data)
    if sigmas is None:
        if crowd and k == 14:
            sigmas = "crowdpose"
        elif k == 17:
            sigmas = "coco"
        else:
            raise ValueError(f"{k} keypoints: name the OKS sigmas (one of {sorted(SIGMAS)}) or pass the values")
    sig = resolve_sigmas(sigmas)
    if sig.size != k:
        raise ValueError(f"{sig.size} sigmas for {k} keypoints")
    if use_area is None:
        use_area = not crowd and all("area" in a for a in data["annotations"])
    if backend == "hcbench":
        arrays = _check_results_fast(results, data, source=results_source)
        from hcbench.metrics.oks import evaluate_oks

        oks_eval = evaluate_oks(data, results, sig, use_area=use_area, result_arrays=arrays)
        stats = [float(v) for v in oks_eval.stats()]
    else:
        _prepare_gt(data, use_area=use_area)
        res = check_keypoint_results(results, data, source=results_source)
        ev = _build_eval(data, res, sig, backend)
        with _quiet():
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(v) for v in ev.stats[:10]]
    if not crowd:
        return dict(zip(COCO_KEYS, stats, strict=True))

    out = {"AP": stats[0], "AP50": stats[1], "AP75": stats[2], "AR": stats[5], "AR50": stats[6], "AR75": stats[7]}
    missing = [img["id"] for img in data["images"] if "crowdIndex" not in img]
    if missing:
        raise ValueError(f"crowd=True needs 'crowdIndex' on every image; missing on image ids {missing[:5]}")
    first, second = CROWD_INDEX_BINS
    bins: dict[str, list] = {"APeasy": [], "APmedium": [], "APhard": []}
    for img in data["images"]:
        ci = float(img["crowdIndex"])
        bins["APeasy" if ci < first else "APmedium" if ci < second else "APhard"].append(img["id"])
    for name, ids in bins.items():
        if not ids:
            out[name] = -1.0  # what the official code reports for an empty split
            continue
        if backend == "hcbench":
            precision = oks_eval.precision_recall(ids)[0]
        else:
            ev.params.imgIds = ids
            with _quiet():
                ev.evaluate()
                ev.accumulate()
            precision = ev.eval["precision"]
        out[name] = float(np.mean(precision[:, :, :, 0, :]))
    return out


# --------------------------------------------------------------------------- PCKh
def pckh(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, head_size: np.ndarray,
         thr: float = 0.5, *, exclude: Sequence[int] | None = None) -> dict[str, Any]:
    """PCKh: a joint is correct when ``||pred - gt|| <= thr * head_size`` (the official MPII rule).

    ``pred``/``gt`` are (N, K, 2) in the same pixel convention, ``visible`` (N, K) marks the
    joints that count, ``head_size`` (N,) is the normaliser (MPII: 0.6 x head-box diagonal);
    persons with ``head_size <= 0`` are skipped. ``"PCKh"`` is the MPII "Mean" as mmpose reports
    it: over all visible joints pooled (i.e. per-joint PCKh weighted by joint counts), leaving out
    pelvis and thorax (joints 6 and 7) when K == 16; ``exclude`` overrides that choice.
    Also returned: ``"PCKh@0.1"`` (same pooling), ``"PCKh_per_joint"`` (NaN for a joint that is
    never visible) and, for MPII's 16 joints, the usual Head/Shoulder/.../Ankle groups.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    head_size = np.asarray(head_size, dtype=np.float64).reshape(-1)
    if pred.ndim != 3 or pred.shape[-1] != 2 or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must both be (N, K, 2); got {pred.shape} and {gt.shape}")
    n, k, _ = pred.shape
    if visible.shape != (n, k) or head_size.shape != (n,):
        raise ValueError(f"visible must be ({n}, {k}) and head_size ({n},); got {visible.shape}, {head_size.shape}")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt[visible]))):
        raise ValueError("NaN or inf in keypoint coordinates")
    if exclude is None:
        exclude = _MPII_EXCLUDED if k == 16 else ()
    keep = np.ones(k, dtype=bool)
    keep[list(exclude)] = False

    valid = visible & (head_size > 0)[:, None]
    dist = np.linalg.norm(pred - gt, axis=-1) / np.where(head_size > 0, head_size, 1.0)[:, None]
    count = valid.sum(0)

    def pooled(t: float) -> tuple[float, np.ndarray]:
        hits = ((dist <= t) & valid).sum(0)
        per_joint = np.where(count > 0, hits / np.maximum(count, 1), np.nan)
        total = count[keep].sum()
        return (float(hits[keep].sum() / total) if total else 0.0), per_joint

    mean, per_joint = pooled(thr)
    out: dict[str, Any] = {"PCKh": mean, "PCKh@0.1": pooled(0.1)[0], "PCKh_per_joint": per_joint.tolist()}
    if k == 16:
        for name, idx in _MPII_GROUPS.items():
            out[f"PCKh_{name}"] = float(np.mean(per_joint[list(idx)]))
    return out
