"""Pedestrian detection: torchvision FCOS on the shared simple feature pyramid.

Why FCOS: it is anchor-free and single-stage, so a ViT's one map feeds it through the shared
:class:`~hcbench.backbones.pyramid.SimpleFeaturePyramid` with one location per pixel of each level
and no proposal stage, proposal sampling or RoI pooling. On CPU it is the faster of the two at
small sizes (measured with vit_tiny, the synth_det pyramid, batch 8 at 192 px, 1 thread: 1.2 s per
training step against 1.7 s for torchvision's Faster R-CNN on the same pyramid), and its loss
takes "ignore" locations with a small change (below), which CrowdHuman and CityPersons need.

Model: backbone ``Features.dense`` -> pyramid (strides ``backbone.stride / s`` for each scale ``s``
in ``adapter.pyramid_scales``) -> FCOS head. Each level's anchor size equals its stride, which makes
torchvision's FCOS assign objects of size 4..8 x stride to it (the paper's scale ranges; the
finest level takes everything smaller, the coarsest everything larger).

Resizing and normalisation happen exactly once each: the dataset resizes (short side
``input.height``, long side at most ``input.width``; a random short side from ``augment.scales``
when training) and yields ``[0, 1]`` images; torchvision's ``GeneralizedRCNNTransform`` only pads the batch (with
the backbone's mean colour; its own resize disabled, its normalisation the identity) and the
backbone normalises with its own mean/std. Predictions
are mapped back to original pixels by the dataset's exact per-axis scale factors.

Ignore regions (CrowdHuman ``mask`` boxes, CityPersons class 0 and, per card, other classes):
ground-truth boxes whose area lies mostly (intersection over the box's area > ``adapter.ignore_iof``)
inside an ignore region are dropped; feature locations that FCOS assigns to background and whose
centre falls inside an ignore region get no classification loss (their logits are replaced by a
constant before torchvision's focal loss, so they contribute 0 and no gradient). Training boxes
are clipped to the image (``adapter.clip_boxes``), as the evaluation clips both sides.

Card keys read here
- ``input.height``: short side after resize; ``input.width``: cap on the long side.
- ``adapter.detector``: ``fcos`` (the one detector built here; named so a card says what it measures).
- ``adapter.pyramid_channels`` (256; a multiple of 32: the head uses GroupNorm(32)),
  ``adapter.pyramid_scales`` ([4, 2, 1, 0.5], ViTDet), ``adapter.head_convs`` (4),
  ``adapter.center_sampling_radius`` (1.5), ``adapter.ignore_iof`` (0.5), ``adapter.clip_boxes`` (true),
  ``adapter.train_labels`` (optional list of dataset classes trained as pedestrians, e.g. [1] for
  CityPersons; boxes of other classes become ignore regions), ``adapter.train_min_height`` (0) and
  ``adapter.train_min_visibility`` (0): smaller or more occluded boxes become ignore regions.
- ``augment.flip`` (0.5), ``augment.scales`` (optional list of training short sides).
- ``eval.options``: ``protocol`` ``crowdhuman`` (AP, MR-2, JI) or ``citypersons`` (MR-2 for
  ``setup``, default ``reasonable``, plus ``MR-2_<name>`` for each of ``setups``);
  ``score_thresh`` (0.05), ``nms_thresh`` (0.5), ``detections_per_img`` (100), ``topk_candidates`` (1000).

Predictions file and scoring: :class:`hcbench.families.detection_eval.DetectionEvaluator` (a JSON
list of ``{"image_id", "bbox": [x, y, w, h], "score"}`` in original image pixels).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, Sampler
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from hcbench.adapters.base import role_split
from hcbench.backbones.features import Backbone
from hcbench.backbones.pyramid import SimpleFeaturePyramid
from hcbench.cards import TaskCard
from hcbench.data.transforms.detection import DetectionTransform, target_of
from hcbench.data.transforms.image import load_rgb
from hcbench.data.types import DatasetSplit, DetectionSample
from hcbench.families.detection_eval import DetectionEvaluator, ground_truth, read_detections  # noqa: F401
from hcbench.registry import ADAPTERS

IGNORED_LOGIT = -30.0  # sigmoid focal loss of this logit against target 0 is ~1e-39


# --------------------------------------------------------------------------- boxes
def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float32).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)


def intersection_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection area / area of each ``a`` box, for [x1, y1, x2, y2] rows."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area[:, None], 1e-6)


def training_boxes(boxes: np.ndarray, ignore: np.ndarray, width: int, height: int, *, clip: bool = True,
                   ignore_iof: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Resized-pixel ``[x, y, w, h]`` boxes and ignore regions -> the ``[x1, y1, x2, y2]`` boxes FCOS
    trains on (clipped, at least 1 px a side, not mostly inside an ignore region) and the regions."""
    b, ig = xywh_to_xyxy(boxes), xywh_to_xyxy(ignore)
    if clip:
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    b = b[((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)]
    if len(ig) and len(b):
        b = b[~(intersection_over_first(b, ig) > ignore_iof).any(1)]
    return b, ig


# --------------------------------------------------------------------------- data
class DetectionDataset(Dataset):
    """Items ``{index, image (3 x H x W in [0, 1]), boxes, ignore (xyxy, resized px), scale (sx, sy)}``."""

    def __init__(self, split: DatasetSplit, card: TaskCard, train: bool):
        self.split, self.train = split, train
        a, aug = card.adapter, card.augment
        self.short, self.max_size = card.input.height, card.input.width
        self.scales = [int(s) for s in aug.get("scales", [])] if train else []
        self.flip = float(aug.get("flip", 0.5)) if train else 0.0
        self.train_labels = set(a["train_labels"]) if a.get("train_labels") is not None else None
        self.min_height = float(a.get("train_min_height", 0))
        self.min_vis = float(a.get("train_min_visibility", 0.0))
        self.clip = bool(a.get("clip_boxes", True))
        self.ignore_iof = float(a.get("ignore_iof", 0.5))

    def __len__(self) -> int:
        return len(self.split.samples)

    def _split_boxes(self, s: DetectionSample) -> tuple[np.ndarray, np.ndarray]:
        """Boxes to train on and ignore regions, in original pixels (per the card's filters)."""
        t = target_of(s)
        boxes, ignore = t["boxes"], t["ignore"]
        keep = np.ones(len(boxes), bool)
        if self.train_labels is not None and s.labels is not None:
            keep &= np.isin(np.asarray(s.labels), list(self.train_labels))
        if self.min_height > 0:
            keep &= boxes[:, 3] >= self.min_height
        if self.min_vis > 0:
            vis = t["visible"]
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.nan_to_num(vis[:, 2] * vis[:, 3] / (boxes[:, 2] * boxes[:, 3]))
            keep &= frac >= self.min_vis
        return boxes[keep], np.concatenate([ignore, boxes[~keep]])

    def __getitem__(self, i: int) -> dict[str, Any]:
        s: DetectionSample = self.split.samples[i]
        image = load_rgb(s.image)
        boxes, ignore = self._split_boxes(s) if self.train else (np.zeros((0, 4), np.float32),) * 2
        # the engine seeds numpy per (seed, epoch, index): draw this item's randomness from it
        rng = np.random.default_rng(np.random.randint(0, 2**31))
        short = int(rng.choice(self.scales)) if self.scales else self.short
        tf = DetectionTransform(short, self.max_size, train=self.train, flip_prob=self.flip,
                                mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # normalised in the detector
        tensor, target, scale = tf(image, {"boxes": boxes, "ignore": ignore}, rng)
        item = {"index": i, "image": tensor, "scale": scale}
        if self.train:
            h, w = tensor.shape[-2:]
            b, ig = training_boxes(target["boxes"], target["ignore"], w, h, clip=self.clip,
                                   ignore_iof=self.ignore_iof)
            item["boxes"], item["ignore"] = torch.from_numpy(b), torch.from_numpy(ig)
        return item


# --------------------------------------------------------------------------- model
class _IgnoreAwareFCOSHead(FCOSHead):
    """FCOS head whose classification loss skips background locations inside ignore regions."""

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):  # noqa: D102 - torchvision's signature
        masks = []
        for t, a, m in zip(targets, anchors, matched_idxs, strict=True):
            ig = t.get("ignore")
            if ig is None or ig.numel() == 0:
                masks.append(torch.zeros(len(a), dtype=torch.bool, device=a.device))
                continue
            c = (a[:, :2] + a[:, 2:]) / 2
            inside = ((c[:, None, 0] >= ig[None, :, 0]) & (c[:, None, 0] <= ig[None, :, 2])
                      & (c[:, None, 1] >= ig[None, :, 1]) & (c[:, None, 1] <= ig[None, :, 3])).any(1)
            masks.append(inside & (m < 0))
        mask = torch.stack(masks).unsqueeze(-1)
        if bool(mask.any()):
            cls = head_outputs["cls_logits"]
            head_outputs = {**head_outputs, "cls_logits": torch.where(mask, torch.full_like(cls, IGNORED_LOGIT), cls)}
        return super().compute_loss(targets, head_outputs, anchors, matched_idxs)


class _FixedSizeTransform(GeneralizedRCNNTransform):
    """Batch only: images arrive resized by the dataset, the backbone normalises (mean 0, std 1
    here). Padding gets the backbone's mean colour, which is zero once normalised, as it was
    when torchvision normalised before padding."""

    def __init__(self, *args, pad_colour: tuple[float, ...] = (0.0, 0.0, 0.0), **kwargs):
        super().__init__(*args, **kwargs)
        self.pad_colour = pad_colour

    def resize(self, image, target=None):
        return image, target

    def batch_images(self, images, size_divisible: int = 32):
        c = torch.tensor(self.pad_colour, dtype=images[0].dtype, device=images[0].device).view(3, 1, 1)
        return super().batch_images([im - c for im in images], size_divisible) + c


class _PyramidBody(nn.Module):
    """The detector's ``backbone``: hcbench backbone -> shared pyramid, with ``out_channels``.

    The backbone is held in a list so that it is registered once, as ``PedestrianDetector.backbone``
    (layer-wise lr decay reads parameter names under ``backbone.``), not twice.
    """

    def __init__(self, backbone: Backbone, pyramid: SimpleFeaturePyramid):
        super().__init__()
        self._backbone = [backbone]
        self.pyramid = pyramid
        self.out_channels = pyramid.out_channels

    def forward(self, x: torch.Tensor):
        return self.pyramid(self._backbone[0](x).dense)


class PedestrianDetector(nn.Module):
    """``forward(images, targets=None)``: FCOS losses when training, detections in eval mode."""

    def __init__(self, backbone: Backbone, card: TaskCard):
        super().__init__()
        a, opts = card.adapter, card.eval.options
        if a.get("detector", "fcos") != "fcos":
            raise ValueError(f"card {card.name}: adapter.detector {a['detector']!r} is not built; use fcos")
        channels = int(a.get("pyramid_channels", 256))
        if channels % 32:
            raise ValueError(f"card {card.name}: adapter.pyramid_channels must be a multiple of 32, got {channels}")
        scales = tuple(float(s) for s in a.get("pyramid_scales", (4.0, 2.0, 1.0, 0.5)))
        self.backbone = backbone
        pyramid = SimpleFeaturePyramid(backbone.embed_dim, backbone.stride, channels, scales)
        strides = pyramid.strides
        anchors = AnchorGenerator(tuple((s,) for s in strides), ((1.0,),) * len(strides))
        head = _IgnoreAwareFCOSHead(channels, 1, num_classes=1, num_convs=int(a.get("head_convs", 4)))
        self.detector = FCOS(
            _PyramidBody(backbone, pyramid), num_classes=1, anchor_generator=anchors, head=head,
            center_sampling_radius=float(a.get("center_sampling_radius", 1.5)),
            score_thresh=float(opts.get("score_thresh", 0.05)), nms_thresh=float(opts.get("nms_thresh", 0.5)),
            detections_per_img=int(opts.get("detections_per_img", 100)),
            topk_candidates=int(opts.get("topk_candidates", 1000)),
        )
        divisible = math.lcm(max(strides), backbone.stride)
        self.detector.transform = _FixedSizeTransform(card.input.height, card.input.width, [0.0, 0.0, 0.0],
                                                      [1.0, 1.0, 1.0], size_divisible=divisible,
                                                      pad_colour=tuple(backbone.mean))

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        return self.detector(images, targets)


# --------------------------------------------------------------------------- adapter
class DetectionAdapter:
    family = "detection"
    predictions_suffix = ".json"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        split = role_split(card, root, role, EVALUATOR, limit)
        if not split.samples:
            raise ValueError(f"{card.dataset.name}/{split.split}: the split is empty")
        return DetectionDataset(split, card, train=role == "train"), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": [it["image"] for it in items],
            "scales": torch.tensor([it["scale"] for it in items], dtype=torch.float32),
        }
        if "boxes" in items[0]:
            batch["targets"] = [{"boxes": it["boxes"], "labels": torch.zeros(len(it["boxes"]), dtype=torch.long),
                                 "ignore": it["ignore"]} for it in items]
        return batch

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        return PedestrianDetector(backbone, card)

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        parts = model(batch["images"], batch["targets"])
        total = sum(parts.values())
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        dets = model(batch["images"])
        out = []
        for i, d, (sx, sy) in zip(batch["index"].tolist(), dets, batch["scales"].tolist(), strict=True):
            b = d["boxes"].float().cpu() / torch.tensor([sx, sy, sx, sy])  # back to original pixels
            xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1)
            out.append({"index": int(i), "boxes": xywh, "scores": d["scores"].float().cpu()})
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


EVALUATOR = DetectionEvaluator()  # predictions codec + metrics, shared with re-scoring and `hcbench score`


ADAPTER = DetectionAdapter()  # the instance hcbench.families.detection.FAMILY.adapter names
ADAPTERS.add("detection", ADAPTER)
