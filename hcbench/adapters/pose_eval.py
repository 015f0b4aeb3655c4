"""Pose predictions file and its scoring: COCO keypoint results, rescoring, OKS-NMS, and
OKS AP (COCO/AIC/CrowdPose), PCKh (MPII) and box-normalised PCK computed from that file.

The ``eval.options`` keys read here are documented in :mod:`hcbench.adapters.pose`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.cards import TaskCard
from hcbench.data.cards import get_dataset_card
from hcbench.data.types import DataFormatError, DatasetSplit, KeypointMeta, PoseInstance

EVAL_DEFAULTS: dict[str, Any] = {
    "sigmas": None, "score_thr": 0.2, "nms": "oks", "nms_thr": 0.9, "pckh_thr": 0.5, "pck_thr": 0.1,
    "crowd": False,
    "backend": "pycocotools",
}


def card_options(card: TaskCard, given: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"card {card.name!r}: unknown {where} key(s) {sorted(unknown)}; "
                         f"the pose adapter knows {sorted(defaults)}")
    return {**defaults, **given}


def prediction_records(predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard) -> list[dict]:
    """COCO keypoint results ``{image_id, category_id: 1, keypoints [K*3], score}`` plus ``index``
    (the sample's position in the split, which PCK/PCKh scoring matches on)."""
    opts = eval_options(card)
    by_index: dict[int, dict] = {}
    for p in predictions:
        by_index.setdefault(int(p["index"]), p)
    records, areas = [], []
    for idx in sorted(by_index):
        p = by_index[idx]
        inst: PoseInstance = split.samples[idx]
        kp = np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 2)
        sc = np.asarray(p["scores"], dtype=np.float64).reshape(-1)
        good = sc > opts["score_thr"]
        # mmpose rescoring: box score x mean confidence of the keypoints above the threshold
        inst_score = float(inst.score) * (float(sc[good].mean()) if good.any() else 0.0)
        flat = np.concatenate([kp, sc[:, None]], axis=1).reshape(-1)
        records.append({"image_id": int(inst.image_id), "category_id": 1,
                        "keypoints": [round(float(v), 3) for v in flat], "score": round(inst_score, 6),
                        "index": idx})
        areas.append(float(inst.bbox[2] * inst.bbox[3]))
    if opts["nms"] == "oks":
        keep = oks_nms(records, np.asarray(areas), resolve_sigmas(card, split), float(opts["nms_thr"]))
        records = [records[i] for i in keep]
    elif opts["nms"] != "none":
        raise ValueError(f"card {card.name!r}: eval.options.nms must be 'oks' or 'none', not {opts['nms']!r}")
    return records


def eval_options(card: TaskCard) -> dict[str, Any]:
    return card_options(card, card.eval.options, EVAL_DEFAULTS, "eval.options")


def resolve_sigmas(card: TaskCard, split: DatasetSplit) -> np.ndarray:
    """OKS sigmas: ``eval.options.sigmas`` (values or a name), else the dataset card's."""
    from hcbench.metrics.pose import resolve_sigmas as named

    spec = eval_options(card)["sigmas"]
    meta: KeypointMeta = split.meta
    sig = named(spec) if spec is not None else np.asarray(meta.sigmas, dtype=np.float64)
    if sig.size != meta.num_keypoints:
        raise ValueError(f"card {card.name!r}: {sig.size} OKS sigmas for {meta.num_keypoints} keypoints "
                         f"(set eval.options.sigmas or the dataset card's keypoints.sigmas)")
    return sig


def oks_nms(records: list[dict], areas: np.ndarray, sigmas: np.ndarray, thr: float) -> list[int]:
    """Greedy OKS non-maximum suppression per image (mmpose ``oks_nms``): indices kept."""
    var = (2 * sigmas) ** 2
    keep: list[int] = []
    by_image: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_image.setdefault(r["image_id"], []).append(i)
    for ids in by_image.values():
        kp = np.asarray([records[i]["keypoints"] for i in ids], dtype=np.float64).reshape(len(ids), -1, 3)
        order = list(np.argsort([-records[i]["score"] for i in ids], kind="stable"))
        while order:
            top, rest = order[0], np.asarray(order[1:], dtype=int)
            keep.append(ids[top])
            if rest.size == 0:
                break
            d2 = ((kp[rest, :, :2] - kp[top, None, :, :2]) ** 2).sum(-1)
            scale = (areas[ids[top]] + areas[[ids[j] for j in rest]]) / 2 + np.spacing(1)
            oks = np.exp(-d2 / var[None] / scale[:, None] / 2).mean(1)
            order = [j for j, o in zip(rest.tolist(), oks, strict=True) if o <= thr]
    return sorted(keep)


def load_results(path: Path) -> list[dict]:
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON: {e}") from None
    if not isinstance(results, list):
        raise DataFormatError(path, "expected a JSON list of COCO keypoint results")
    return results


def score_oks(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """OKS AP of ``results`` against the split's COCO ground truth, restricted to the images
    (and, for a limited ground-truth-box split, the persons) the split holds."""
    from hcbench.data.readers.coco import load_json
    from hcbench.metrics.pose import keypoint_ap

    gt_path = split.extra.get("coco_gt")
    if gt_path is None:
        raise ValueError(f"card {card.name!r}: split {split.name}/{split.split} has no COCO ground truth "
                         "(extra['coco_gt']); OKS AP needs one")
    ds_opts = get_dataset_card(card.dataset.name).options
    crowd = bool(eval_options(card)["crowd"]) or ds_opts.get("iou_type") == "keypoints_crowd"
    gt: Any = gt_path
    image_ids = split.extra.get("image_ids")
    if image_ids is not None and len(image_ids) < split.extra.get("num_images", len(image_ids)):
        gt = _restrict_gt(load_json(gt_path), split)
    return keypoint_ap(gt, results, sigmas=resolve_sigmas(card, split), crowd=crowd,
                       use_area=ds_opts.get("use_area"), backend=eval_options(card)["backend"])


def _restrict_gt(doc: dict, split: DatasetSplit) -> dict:
    # a limited split (smoke tiers) is scored against the persons it holds, so a perfect
    # prediction of those persons scores 1.0; crowd / unlabelled annotations stay (ignored anyway)
    images = set(split.extra["image_ids"])
    persons = {s.ann_id for s in split.samples if s.ann_id >= 0}
    detected = split.extra.get("boxes") == "detected"

    def kept(a: dict) -> bool:
        if a["image_id"] not in images:
            return False
        ignored = a.get("iscrowd", 0) or a.get("num_keypoints", 1) == 0 or max(a["keypoints"][2::3], default=0) <= 0
        return detected or ignored or a["id"] in persons

    return {**doc, "images": [im for im in doc["images"] if im["id"] in images],
            "annotations": [a for a in doc["annotations"] if kept(a)]}


def _matched(results: list[dict], split: DatasetSplit) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ``(N, K, 2)`` matched to the split's persons by ``index``, and the ground truth
    ``(N, K, 3)``; a person without a prediction gets a far-away point (all joints wrong)."""
    n, k = len(split.samples), split.meta.num_keypoints
    gt = np.stack([s.keypoints for s in split.samples]).astype(np.float64) if n else np.zeros((0, k, 3))
    pred = np.full((n, k, 2), np.abs(gt[..., :2]).max(initial=0.0) + 1e6)
    for r in results:
        idx = r.get("index")
        if not isinstance(idx, int) or not 0 <= idx < n:
            raise ValueError(f"PCK scoring matches results to persons by 'index' (0..{n - 1}); got {idx!r}")
        pred[idx] = np.asarray(r["keypoints"], dtype=np.float64).reshape(k, 3)[:, :2]
    return pred, gt


def score_pckh(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """MPII PCKh (head-size normalised) of the results."""
    from hcbench.metrics.pose import pckh

    head = np.asarray([s.head_size if s.head_size is not None else np.nan for s in split.samples])
    if np.isnan(head).any():
        raise ValueError(f"card {card.name!r}: PCKh needs head sizes; split {split.name}/{split.split} has "
                         "none (the dataset card's split must list the 'head_boxes' file)")
    pred, gt = _matched(results, split)
    out = pckh(pred, gt[..., :2], gt[..., 2] > 0, head, thr=float(eval_options(card)["pckh_thr"]))
    return {key: float(v) for key, v in out.items() if isinstance(v, float) and not math.isnan(v)}


def score_pck(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """``PCK``: a labelled joint is correct within ``pck_thr`` x the longer side of its person
    box (mmpose ``PCKAccuracy(norm_item='bbox')`` with a scalar normaliser), pooled over joints."""
    from hcbench.metrics.pose import pckh

    if split.extra.get("boxes") == "detected":
        raise ValueError(f"card {card.name!r}: PCK matches predictions to annotated persons; it needs "
                         "ground-truth boxes (input.boxes: ground_truth)")
    pred, gt = _matched(results, split)
    size = np.asarray([max(float(s.bbox[2]), float(s.bbox[3])) for s in split.samples])
    out = pckh(pred, gt[..., :2], gt[..., 2] > 0, size, thr=float(eval_options(card)["pck_thr"]), exclude=())
    return {"PCK": float(out["PCKh"])}


def score_file(path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """Every metric the card lists: PCKh (MPII), PCK (box-normalised), OKS AP/AR (COCO style)."""
    results = load_results(path)
    wanted = set(card.eval.metrics)
    out: dict[str, float] = {}
    if any(m.startswith("PCKh") for m in wanted):
        out.update(score_pckh(results, split, card))
    if "PCK" in wanted:
        out.update(score_pck(results, split, card))
    if wanted - set(out):
        out.update(score_oks(results, split, card))
    return out
