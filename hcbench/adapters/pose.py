"""Top-down pose adapter: ViTPose "simple" heatmap head, UDP targets, DARK-UDP decoding.

Protocol-card keys this adapter reads (unknown keys are refused, so a typo cannot silently
fall back to a default):

``adapter``
    ``head`` ("heatmap"), ``deconv_layers`` (2: the count for a stride-16 backbone; a backbone
    of stride ``s`` gets ``log2(s / heatmap_stride)`` so the heatmap is always
    ``input / heatmap_stride``), ``deconv_channels`` (256), ``deconv_kernel`` (4),
    ``final_kernel`` (1), ``heatmap_stride`` (4), ``loss_weight`` (1.0),
    ``codec: {type: udp_gaussian, sigma: 2, refine: dark|none, blur_kernel: 11}``.
``augment``
    ``flip`` (true), ``half_body`` (probability, 0.3), ``scale`` ([0.75, 1.25]), ``rotate``
    (degrees, 40), ``rotate_prob`` (0.6), ``shift`` (0.0), ``padding`` (box padding, 1.25).
``eval.options``
    ``sigmas`` (list, or a dataset name ``coco|aic|crowdpose``; default: the dataset card's),
    ``score_thr`` (0.2: keypoints above it make the instance score), ``nms`` (``oks`` |
    ``none``), ``nms_thr`` (0.9), ``pckh_thr`` (0.5), ``crowd`` (CrowdPose easy/medium/hard;
    also on when the dataset card says ``iou_type: keypoints_crowd``), ``backend``
    (``pycocotools`` | ``faster-coco-eval``).
    Metric ``PCKh`` in ``eval.metrics`` selects head-normalised PCK (MPII).

Dataset items: ``image`` uint8 ``3 x H x W`` (the model normalises with the backbone's
mean/std, so data loading never needs the backbone), ``heatmaps`` ``K x H/4 x W/4``,
``weights`` ``K``, ``matrix`` (``2 x 3`` original -> input) and ``index``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler, default_collate

from hcbench.adapters.pose_codec import decode_heatmaps, encode_udp
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import get_dataset_card, read_split
from hcbench.data.types import DatasetSplit, KeypointMeta, PoseInstance
from hcbench.registry import ADAPTERS

ADAPTER_DEFAULTS: dict[str, Any] = {
    "head": "heatmap", "deconv_layers": 2, "deconv_channels": 256, "deconv_kernel": 4, "final_kernel": 1,
    "heatmap_stride": 4, "loss_weight": 1.0, "codec": {},
}
CODEC_DEFAULTS: dict[str, Any] = {"type": "udp_gaussian", "sigma": 2.0, "refine": "dark", "blur_kernel": 11}
AUGMENT_DEFAULTS: dict[str, Any] = {
    "flip": True, "half_body": 0.3, "scale": [0.75, 1.25], "rotate": 40.0, "rotate_prob": 0.6, "shift": 0.0,
    "padding": 1.25,
}
EVAL_DEFAULTS: dict[str, Any] = {
    "sigmas": None, "score_thr": 0.2, "nms": "oks", "nms_thr": 0.9, "pckh_thr": 0.5, "crowd": False,
    "backend": "pycocotools",
}


def _options(card: TaskCard, given: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"card {card.name!r}: unknown {where} key(s) {sorted(unknown)}; "
                         f"the pose adapter knows {sorted(defaults)}")
    return {**defaults, **given}


def adapter_options(card: TaskCard) -> dict[str, Any]:
    opts = _options(card, card.adapter, ADAPTER_DEFAULTS, "adapter")
    opts["codec"] = _options(card, dict(opts["codec"]), CODEC_DEFAULTS, "adapter.codec")
    if opts["head"] != "heatmap" or opts["codec"]["type"] != "udp_gaussian":
        raise ValueError(f"card {card.name!r}: the pose adapter implements head 'heatmap' with codec "
                         f"'udp_gaussian', not {opts['head']!r}/{opts['codec']['type']!r}")
    return opts


def keypoint_meta(card: TaskCard) -> KeypointMeta:
    meta = get_dataset_card(card.dataset.name).meta()
    if not isinstance(meta, KeypointMeta):
        raise ValueError(f"card {card.name!r}: dataset {card.dataset.name!r} is not a keypoint dataset")
    return meta


def heatmap_size(card: TaskCard) -> tuple[int, int]:
    """``(w, h)`` of the target heatmaps."""
    stride = adapter_options(card)["heatmap_stride"]
    h, w = card.input.height, card.input.width
    if h % stride or w % stride:
        raise ValueError(f"card {card.name!r}: input {h}x{w} is not a multiple of heatmap_stride {stride}")
    return w // stride, h // stride


# --------------------------------------------------------------------------- data
class TopDownDataset(Dataset):
    """One item per person box: the crop, its UDP target heatmaps and the crop's affine matrix."""

    def __init__(self, split: DatasetSplit, card: TaskCard, train: bool):
        from hcbench.data.transforms.pose import TopDownTransform

        self.split = split
        self.train = train
        aug = _options(card, card.augment, AUGMENT_DEFAULTS, "augment")
        self.transform = TopDownTransform(
            split.meta, (card.input.height, card.input.width), train=train, scale=tuple(aug["scale"]),
            rotate=float(aug["rotate"]), flip=bool(aug["flip"]), half_body=float(aug["half_body"]),
            padding=float(aug["padding"]), rotate_prob=float(aug["rotate_prob"]), shift=float(aug["shift"]))
        self.input_wh = (card.input.width, card.input.height)
        self.heatmap_wh = heatmap_size(card)
        self.sigma = float(adapter_options(card)["codec"]["sigma"])

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        # a fresh generator per item, drawn from torch's RNG: DataLoader seeds torch per
        # worker and epoch, so augmentation is reproducible and differs across workers
        seed = int(torch.randint(0, 2**62, ()).item()) if self.train else index
        crop = self.transform(self.split.samples[index], rng=np.random.default_rng(seed))
        heat, weights = encode_udp(crop.keypoints[:, :2], crop.keypoints[:, 2], self.input_wh,
                                   self.heatmap_wh, self.sigma)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(crop.image)).permute(2, 0, 1).contiguous(),
            "heatmaps": torch.from_numpy(heat),
            "weights": torch.from_numpy(weights),
            "matrix": torch.from_numpy(np.asarray(crop.matrix, dtype=np.float64)),
            "index": index,
        }


# --------------------------------------------------------------------------- model
class HeatmapHead(nn.Module):
    """ViTPose "simple" head: ``n`` x (deconv 4x4 stride 2, BN, ReLU), then a 1x1 conv to K maps."""

    def __init__(self, in_channels: int, num_keypoints: int, num_deconv: int = 2, channels: int = 256,
                 kernel: int = 4, final_kernel: int = 1):
        super().__init__()
        padding, out_pad = {4: (1, 0), 3: (1, 1), 2: (0, 0)}.get(kernel, (None, None))
        if padding is None:
            raise ValueError(f"deconv_kernel must be 2, 3 or 4, got {kernel}")
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_deconv):
            layers += [nn.ConvTranspose2d(c, channels, kernel, stride=2, padding=padding, output_padding=out_pad,
                                          bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
            c = channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(c, num_keypoints, final_kernel, padding=final_kernel // 2)
        for m in self.modules():  # the reference initialisation (small outputs at start)
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, std=0.001)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.deconv(x))


class PoseModel(nn.Module):
    """Backbone + heatmap head. Takes uint8 (or 0..255 float) images, normalises them itself."""

    def __init__(self, backbone: Backbone, head: HeatmapHead, flip_index: np.ndarray,
                 input_wh: tuple[int, int]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_wh = input_wh
        self.register_buffer("mean", torch.tensor(backbone.mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(backbone.std).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("flip_index", torch.as_tensor(flip_index, dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.mean) / self.std
        return self.head(self.backbone(x).dense)


def num_deconv_for(stride: int, heatmap_stride: int) -> int:
    ratio = stride / heatmap_stride
    n = round(math.log2(ratio)) if ratio >= 1 else -1
    if n < 0 or 2**n != ratio:
        raise ValueError(f"backbone stride {stride} cannot reach heatmap stride {heatmap_stride} with "
                         "2x deconvolutions (needs stride = heatmap_stride x 2^n)")
    return n


# --------------------------------------------------------------------------- adapter
class PoseAdapter:
    family = "pose"
    predictions_suffix = ".json"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        if role not in ("train", "eval"):
            raise ValueError(f"role must be 'train' or 'eval', got {role!r}")
        name = card.dataset.name
        split_name = (card.dataset.train_split or card.dataset.split) if role == "train" else card.dataset.split
        split = read_split(name, split_name, root, limit=limit)
        if role == "eval" and card.input.boxes == "detected":
            split = _with_detected_boxes(split, card, root, limit)
        if role == "train":  # persons without a labelled keypoint carry no training signal
            split.samples = [s for s in split.samples if s.num_visible > 0]
        return TopDownDataset(split, card, train=role == "train"), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return default_collate(items)

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None  # plain shuffling

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        opts = adapter_options(card)
        meta = keypoint_meta(card)
        n = num_deconv_for(backbone.stride, opts["heatmap_stride"])
        head = HeatmapHead(backbone.embed_dim, meta.num_keypoints, n, opts["deconv_channels"],
                           opts["deconv_kernel"], opts["final_kernel"])
        model = PoseModel(backbone, head, meta.flip_index(), (card.input.width, card.input.height))
        model.loss_weight = float(opts["loss_weight"])
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        pred = model(batch["image"]).float()
        target = batch["heatmaps"].to(pred)
        if pred.shape != target.shape:
            raise ValueError(f"heatmap head gives {tuple(pred.shape)} but targets are {tuple(target.shape)}; "
                             "input size must be a multiple of the backbone stride")
        w = batch["weights"].to(pred)[:, :, None, None]
        # mmpose KeypointMSELoss(use_target_weight=True): mean over B, K, h, w of w * (p - t)^2
        mse = (F.mse_loss(pred, target, reduction="none") * w).mean()
        weight = float(getattr(getattr(model, "module", model), "loss_weight", 1.0))  # DDP wraps the model
        return {"loss": mse * weight, "mse": mse.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        from hcbench.data.transforms.geometry import invert_affine, transform_points
        from hcbench.data.transforms.pose import flip_heatmaps

        codec = adapter_options(card)["codec"]
        net: PoseModel = getattr(model, "module", model)
        images = batch["image"]
        heat = model(images).float()
        if card.eval.flip_test:
            flipped = model(images.flip(-1)).float()
            heat = 0.5 * (heat + flip_heatmaps(flipped, net.flip_index.cpu().numpy()))
        coords, scores = decode_heatmaps(heat, net.input_wh, refine=codec["refine"],
                                         blur_kernel=int(codec["blur_kernel"]))
        coords, scores = coords.cpu().numpy(), scores.cpu().numpy()
        mats = batch["matrix"].cpu().numpy()
        out = []
        for i, idx in enumerate(batch["index"].tolist() if torch.is_tensor(batch["index"]) else batch["index"]):
            pts = transform_points(coords[i].astype(np.float64), invert_affine(mats[i]))
            out.append({"index": int(idx), "keypoints": pts.astype(np.float32), "scores": scores[i].astype(np.float32)})
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        from hcbench.results.store import atomic_write_text

        results = prediction_records(predictions, split, card)
        path = Path(path)
        atomic_write_text(path, json.dumps(results, separators=(",", ":")) + "\n")
        return path

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return score_file(path, split, card)


def prediction_records(predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard) -> list[dict]:
    """COCO keypoint results ``{image_id, category_id: 1, keypoints [K*3], score}`` plus ``index``
    (the sample's position in the split, which PCKh scoring matches on)."""
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
    return _options(card, card.eval.options, EVAL_DEFAULTS, "eval.options")


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
    from hcbench.data.types import DataFormatError

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


def score_pckh(results: list[dict], split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    """PCKh of the results matched to the split's persons by ``index``; a person without a
    prediction counts as all joints wrong."""
    from hcbench.metrics.pose import pckh

    n, k = len(split.samples), split.meta.num_keypoints
    gt = np.stack([s.keypoints for s in split.samples]) if n else np.zeros((0, k, 3), np.float32)
    head = np.asarray([s.head_size if s.head_size is not None else np.nan for s in split.samples])
    if np.isnan(head).any():
        raise ValueError(f"card {card.name!r}: PCKh needs head sizes; split {split.name}/{split.split} has "
                         "none (the dataset card's split must list the 'head_boxes' file)")
    far = np.abs(gt[..., :2]).max(initial=0.0) + 1e6  # a finite point no head size reaches
    pred = np.full((n, k, 2), far)
    for r in results:
        idx = r.get("index")
        if not isinstance(idx, int) or not 0 <= idx < n:
            raise ValueError(f"PCKh scoring matches results to persons by 'index' (0..{n - 1}); got {idx!r}")
        pred[idx] = np.asarray(r["keypoints"], dtype=np.float64).reshape(k, 3)[:, :2]
    out = pckh(pred, gt[..., :2], gt[..., 2] > 0, head, thr=float(eval_options(card)["pckh_thr"]))
    return {key: float(v) for key, v in out.items() if isinstance(v, float) and not math.isnan(v)}


def score_file(path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
    results = load_results(path)
    if any(m.startswith("PCKh") for m in card.eval.metrics):
        return score_pckh(results, split, card)
    return score_oks(results, split, card)


def _with_detected_boxes(split: DatasetSplit, card: TaskCard, root: Path | None, limit: int | None
                         ) -> DatasetSplit:
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
        raise FileNotFoundError(f"card {card.name!r} evaluates with detected boxes but "
                                + (f"the detection file {missing} is missing" if missing else
                                   f"dataset {card.dataset.name!r} lists no detections for split {split.split!r}"))
    split.samples = list(dets)
    split.extra["image_ids"] = list(dict.fromkeys(s.image_id for s in dets))
    split.extra["boxes"] = "detected"
    return split


ADAPTERS.add("pose", PoseAdapter())
