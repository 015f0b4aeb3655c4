"""The pose evaluator: the predictions file (COCO keypoint results with instance rescoring and
OKS-NMS) and its scoring — OKS AP (COCO/AIC/CrowdPose), PCKh (MPII) and box-normalised PCK.

:class:`PoseEvaluator` is the one code path for ``hcbench run`` (the pose adapter calls it),
``submit validate --rescore`` and ``hcbench score pose``. The ``eval.options`` keys are the
fields of :class:`hcbench.families.pose.PoseEvalOptions`.
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
from hcbench.errors import ConfigError, InputNotFoundError
from hcbench.families.evaluator import BaseEvaluator, ScoreUsageError, exists, jsonable, read_json
from hcbench.families.pose import PoseEvalOptions

EVAL_DEFAULTS: dict[str, Any] = PoseEvalOptions().model_dump()
POSE_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def card_options(card: TaskCard, given: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ConfigError(f"card {card.name!r}: unknown {where} key(s) {sorted(unknown)}; "
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
        records.append({"image_id": int(inst.image_id), "category_id": int(inst.extra.get("category_id", 1)),
                        "keypoints": [round(float(v), 3) for v in flat], "score": round(inst_score, 6),
                        "index": idx})
        areas.append(float(inst.bbox[2] * inst.bbox[3]))
    if opts["nms"] == "oks":
        keep = oks_nms(records, np.asarray(areas), resolve_sigmas(card, split), float(opts["nms_thr"]))
        records = [records[i] for i in keep]
    elif opts["nms"] != "none":
        raise ConfigError(f"card {card.name!r}: eval.options.nms must be 'oks' or 'none', not {opts['nms']!r}")
    return records


def eval_options(card: TaskCard) -> dict[str, Any]:
    """The card's ``eval.options`` with defaults (validated by :class:`PoseEvalOptions`)."""
    try:
        return PoseEvalOptions.model_validate(dict(card.eval.options)).model_dump()
    except ValueError as e:
        raise ConfigError(f"card {card.name!r}: invalid eval.options: {e}") from None


def resolve_sigmas(card: TaskCard, split: DatasetSplit) -> np.ndarray:
    """OKS sigmas: ``eval.options.sigmas`` (values or a name), else the dataset card's."""
    from hcbench.metrics.pose import resolve_sigmas as named

    spec = eval_options(card)["sigmas"]
    meta: KeypointMeta = split.meta
    sig = named(spec) if spec is not None else np.asarray(meta.sigmas, dtype=np.float64)
    if sig.size != meta.num_keypoints:
        raise ConfigError(f"card {card.name!r}: {sig.size} OKS sigmas for {meta.num_keypoints} keypoints "
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
        raise ConfigError(f"card {card.name!r}: split {split.name}/{split.split} has no COCO ground truth "
                         "(extra['coco_gt']); OKS AP needs one")
    ds_opts = get_dataset_card(card.dataset.name).options
    crowd = crowd_protocol(card)
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
    for i, r in enumerate(results):
        idx = r.get("index")
        if not isinstance(idx, int) or not 0 <= idx < n:
            raise DataFormatError("predictions", f"PCK scoring matches results to persons by 'index' (0..{n - 1}); "
                              f"got {idx!r}", record=f"result {i}")
        pred[idx] = np.asarray(r["keypoints"], dtype=np.float64).reshape(k, 3)[:, :2]
    return pred, gt


def score_pckh(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """MPII PCKh (head-size normalised) of the results."""
    from hcbench.metrics.pose import pckh

    head = np.asarray([s.head_size if s.head_size is not None else np.nan for s in split.samples])
    if np.isnan(head).any():
        raise ConfigError(f"card {card.name!r}: PCKh needs head sizes; split {split.name}/{split.split} has "
                         "none (the dataset card's split must list the 'head_boxes' file)")
    pred, gt = _matched(results, split)
    out = pckh(pred, gt[..., :2], gt[..., 2] > 0, head, thr=float(eval_options(card)["pckh_thr"]))
    return {key: float(v) for key, v in out.items() if isinstance(v, float) and not math.isnan(v)}


def score_pck(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """``PCK``: a labelled joint is correct within ``pck_thr`` x the longer side of its person
    box (mmpose ``PCKAccuracy(norm_item='bbox')`` with a scalar normaliser), pooled over joints."""
    from hcbench.metrics.pose import pckh

    if split.extra.get("boxes") == "detected":
        raise ConfigError(f"card {card.name!r}: PCK matches predictions to annotated persons; it needs "
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
    if wholebody_protocol(card):
        out.update(score_wholebody(results, split, card))
    elif wanted - set(out):
        out.update(score_oks(results, split, card))
    if eval_options(card)["per_category"]:
        out.update(score_per_category(results, split, card))
    return out


def wholebody_protocol(card: TaskCard) -> bool:
    """COCO-WholeBody per-part AP: the card's ``wholebody`` option or its dataset's ``iou_type``."""
    ds_opts = get_dataset_card(card.dataset.name).options
    return bool(eval_options(card)["wholebody"]) or ds_opts.get("iou_type") == "keypoints_wholebody"


def _split_gt(split: DatasetSplit, card: TaskCard) -> tuple[dict, Path]:
    from hcbench.data.readers.coco import load_json

    gt_path = split.extra.get("coco_gt")
    if gt_path is None:
        raise ConfigError(f"card {card.name!r}: split {split.name}/{split.split} has no COCO ground truth")
    doc = load_json(gt_path)
    image_ids = split.extra.get("image_ids")
    if image_ids is not None and len(image_ids) < split.extra.get("num_images", len(image_ids)):
        doc = _restrict_gt(doc, split)
    return doc, Path(gt_path)


def score_wholebody(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """COCO-WholeBody AP/AR per part and for the whole body (:mod:`hcbench.metrics.wholebody`)."""
    from hcbench.metrics.wholebody import wholebody_ap

    doc, gt_path = _split_gt(split, card)
    use_area = get_dataset_card(card.dataset.name).options.get("use_area", True) is not False
    return wholebody_ap(doc, results, use_area=use_area, backend=eval_options(card)["backend"], source=gt_path)


def scene_category(image: dict) -> str:
    """An image's scene category: its ``category`` field (Human-Art), else its folder's name, with
    spaces as underscores so both spell a scene alike (``"digital art"``, ``.../digital_art/x.jpg``)."""
    cat = image.get("category")
    name = cat if isinstance(cat, str) and cat.strip() else Path(str(image.get("file_name", ""))).parent.name
    return "_".join(name.split()) or "-"


def score_per_category(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """``AP/<category>``: OKS AP over the images of each scene category (Human-Art). A category the
    card lists but the split lacks (a limited tier) is NaN, i.e. undefined, not an error."""
    from hcbench.metrics.pose import keypoint_ap

    doc, _ = _split_gt(split, card)
    groups: dict[str, set] = {}
    for im in doc["images"]:
        groups.setdefault(scene_category(im), set()).add(im["id"])
    use_area = get_dataset_card(card.dataset.name).options.get("use_area")
    out: dict[str, float] = {}
    for cat, ids in sorted(groups.items()):
        sub = {**doc, "images": [im for im in doc["images"] if im["id"] in ids],
               "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}
        res = [r for r in results if r["image_id"] in ids]
        out[f"AP/{cat}"] = keypoint_ap(sub, res, sigmas=resolve_sigmas(card, split), use_area=use_area,
                                       backend=eval_options(card)["backend"])["AP"]
    for m in card.eval.metrics:
        if m.startswith("AP/") and m not in out:
            out[m] = float("nan")
    return out


def crowd_protocol(card: TaskCard) -> bool:
    """CrowdPose AP easy/medium/hard: the card's ``crowd`` option or its dataset's ``iou_type``."""
    ds_opts = get_dataset_card(card.dataset.name).options
    return bool(eval_options(card)["crowd"]) or ds_opts.get("iou_type") == "keypoints_crowd"


def with_detected_boxes(split: DatasetSplit, card: TaskCard, root: Path | None, limit: int | None) -> DatasetSplit:
    """The eval split with the detector's person boxes as samples (``input.boxes: detected``)."""
    from hcbench.data.cards import dataset_root
    from hcbench.data.readers.coco import CocoKeypointIndex, load_json

    if card.input.detections:
        ds_card = get_dataset_card(card.dataset.name)
        base = dataset_root(card.dataset.name, root)
        gt_path = Path(split.extra["coco_gt"])
        index = CocoKeypointIndex(load_json(gt_path), gt_path, split.meta.num_keypoints)
        image_dir = base / ds_card.split(split.split).files["images"]
        dets = index.det_instances(base / card.input.detections, image_dir,
                                   score_thr=float(ds_card.options.get("det_score_thr", 0.0)), limit=limit)
    elif "detections" in split.extra:
        dets = split.extra["detections"]
    else:
        missing = split.extra.get("detections_missing")
        raise InputNotFoundError(f"card {card.name!r} evaluates with detected boxes but "
                                + (f"the detection file {missing} is missing" if missing else
                                   f"dataset {card.dataset.name!r} lists no detections for split {split.split!r}"))
    split.samples = list(dets)
    split.extra["image_ids"] = list(dict.fromkeys(s.image_id for s in dets))
    split.extra["boxes"] = "detected"
    return split


def _sigmas_arg(spec: str) -> Any:
    """``--sigmas``: a named set (``coco|aic|crowdpose|mpii``) or a file of numbers."""
    from hcbench.metrics.pose import SIGMAS

    if spec.lower() in SIGMAS:
        return spec.lower()
    path = Path(spec)
    if not path.exists():
        raise ScoreUsageError(f"--sigmas {spec!r}: not one of {sorted(SIGMAS)} and no such file")
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


def score_coco_files(gt: Path, pred: Path, sigmas: Any = "coco", backend: str = "hcbench", crowd: bool = False,
                     use_area: bool | None = None) -> dict[str, Any]:
    """OKS AP/AR of COCO keypoint results ``pred`` against the COCO keypoint json ``gt``
    (``crowd``: the CrowdPose keys ``AP AP50 AP75 AR AR50 AR75 APeasy APmedium APhard``)."""
    from hcbench.metrics.pose import CROWD_KEYS, keypoint_ap, load_coco_gt, num_keypoints
    from hcbench.metrics.pose import resolve_sigmas as named

    data = load_coco_gt(exists(gt, "ground truth"))
    k = num_keypoints(data, source=gt)
    n_sig = len(named(sigmas))
    if n_sig != k:
        shown = sigmas if isinstance(sigmas, str) else "given"
        raise ScoreUsageError(f"{n_sig} OKS sigmas ({shown}) but {gt} has {k} keypoints per person")
    results = read_json(Path(pred), "predictions")
    out = keypoint_ap(data, results, sigmas=sigmas, backend=backend, crowd=crowd, use_area=use_area,
                      results_source=pred)  # validates the results, naming the file
    return jsonable({key: out[key] for key in (CROWD_KEYS if crowd else POSE_KEYS)})


class PoseEvaluator(BaseEvaluator):
    """COCO keypoint results (``.json``) and OKS AP / PCKh / PCK, for run, re-scoring and score."""

    family = "pose"
    predictions_suffix = ".json"

    def eval_split(self, card: TaskCard, root: Path | None, limit: int | None = None) -> DatasetSplit:
        split = super().eval_split(card, root, limit)
        if card.input.boxes == "detected":
            split = with_detected_boxes(split, card, root, limit)
        return split

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        from hcbench.io import atomic_write_text

        results = prediction_records(predictions, split, card)
        atomic_write_text(Path(path), json.dumps(results, separators=(",", ":")) + "\n")
        return Path(path)

    def read(self, path: Path, split: DatasetSplit | None = None, card: TaskCard | None = None) -> list[dict]:
        return load_results(path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return score_file(path, split, card)

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    sigmas: str | None = None, crowd: bool = False, backend: str | None = None,
                    wholebody: bool = False, **unknown: Any) -> dict[str, Any]:
        """Without ``card``: OKS AP of COCO keypoint results against the COCO json ``gt``
        (``crowd`` implies the CrowdPose sigmas unless ``sigmas`` says otherwise). With ``card``:
        every protocol option from the card — ``gt`` is the dataset root (any metric, MPII PCKh
        included) or a COCO keypoint json (OKS metrics with the card's sigmas, crowd protocol,
        area rule and backend)."""
        if unknown:
            raise ScoreUsageError(f"hcbench score pose: unknown option(s) {sorted(unknown)}")
        if gt is None:
            raise ScoreUsageError("hcbench score pose: pass --gt")
        if card is None and wholebody:  # a COCO-WholeBody json: per-part AP/AR, official use_area
            from hcbench.metrics.wholebody import wholebody_ap

            if sigmas is not None or crowd:
                raise ScoreUsageError("--wholebody uses COCO-WholeBody's own sigmas and protocol; drop --sigmas/--crowd")
            kw = {} if backend is None else {"backend": backend}
            return jsonable(wholebody_ap(exists(gt, "ground truth"), read_json(Path(pred), "predictions"), **kw))
        if card is None:
            sig = _sigmas_arg(sigmas) if sigmas is not None else ("crowdpose" if crowd else "coco")
            return score_coco_files(Path(gt), Path(pred), sig, backend or "hcbench", crowd)
        given = [f for f, v in (("--sigmas", sigmas), ("--crowd", crowd), ("--backend", backend),
                                ("--wholebody", wholebody)) if v]
        if given:
            raise ScoreUsageError(f"card {card.name!r} fixes the protocol (sigmas, crowd, backend); drop {', '.join(given)}")
        from hcbench.families.evaluator import root_from_gt

        gt = exists(gt, "ground truth")
        if gt.is_dir() or root_from_gt(card, gt) is not None:
            return jsonable(score_file(exists(pred, "predictions"), self.split_from_gt(card, gt), card))
        if wholebody_protocol(card):  # a COCO-WholeBody json: per-part AP/AR, the card's area rule
            from hcbench.metrics.wholebody import wholebody_ap

            use_area = get_dataset_card(card.dataset.name).options.get("use_area", True) is not False
            return jsonable(wholebody_ap(gt, read_json(Path(pred), "predictions"), use_area=use_area,
                                         backend=eval_options(card)["backend"]))
        oks_only = [m for m in card.eval.metrics if m.startswith("PCK")]
        if oks_only:
            raise ScoreUsageError(f"card {card.name!r} reports {oks_only}, which need the dataset's persons "
                                  f"(head sizes, boxes): pass --gt the {card.dataset.name} dataset root")
        opts = eval_options(card)
        ds = get_dataset_card(card.dataset.name)
        sig = opts["sigmas"] if opts["sigmas"] is not None else list(ds.keypoints.sigmas) if ds.keypoints else "coco"
        return score_coco_files(gt, Path(pred), sig, opts["backend"], crowd_protocol(card), ds.options.get("use_area"))
