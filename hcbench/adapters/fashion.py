"""Apparel instance segmentation with attributes: torchvision Mask R-CNN on the shared simple feature
pyramid, plus an attribute head on the RoI box features, trained jointly.

Model: backbone ``Features.dense`` -> :class:`~hcbench.backbones.pyramid.SimpleFeaturePyramid`
(strides ``backbone.stride / s`` for ``adapter.pyramid_scales``) -> torchvision's RPN (one anchor
size per level, ``adapter.anchor_sizes``, x ``adapter.anchor_ratios``), RoIAlign box head (two FC
layers of ``adapter.box_head_dim``) and mask head (``adapter.mask_head_convs`` 3x3 convs of
``adapter.mask_head_channels``, 28 x 28 masks; with ``adapter.box_class_agnostic`` /
``adapter.mask_class_agnostic`` one box regression / one mask per RoI serves every category, as
detectron2's CLS_AGNOSTIC_BBOX_REG / CLS_AGNOSTIC_MASK, learning from all garments at once, which a
from-scratch smoke run needs); the attribute head is one linear layer on the same
box-head representation, a sigmoid per attribute of the dataset (multi-label BCE, mean over
instances and attributes, times ``adapter.attribute_loss_weight``). In training its RoIs are the
positive proposals the box head samples, with the attributes of their matched ground truth; at
inference, the final detections.

This is Attribute-Mask R-CNN (Fashionpedia's baseline) reduced to what torchvision provides, not
KE-RCNN: no knowledge-embedded attribute branch (no category-attribute co-occurrence graph, no
part-aware and context features), one shared FC representation instead of a separate attribute
RoI head.

Data: the dataset resizes (training: keep the aspect ratio and fit the image into a square of side
``augment.scale`` x r, r ~ U(``augment.ratio_range``), then a random crop of at most
``augment.scale`` a side when ``augment.crop``; evaluation: fit into ``input.width`` x
``input.height``), flips with ``augment.flip`` and yields ``[0, 1]`` images; the backbone normalises
(torchvision's transform runs with mean 0, std 1 and its own resize disabled). Masks are pasted at
the resized size and mapped back to the original pixels before RLE encoding.

Card keys read here: ``adapter`` and ``augment`` as above (typed in
:mod:`hcbench.families.fashion`); ``eval.options``: ``score_thresh``, ``nms_thresh``,
``detections_per_img``, ``mask_thresh`` (0.5), ``attribute_threshold`` (0.5).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, Sampler
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import MultiScaleRoIAlign

from hcbench.adapters.base import role_split
from hcbench.adapters.detection import _FixedSizeTransform, _PyramidBody
from hcbench.backbones.features import Backbone
from hcbench.backbones.pyramid import SimpleFeaturePyramid
from hcbench.cards import TaskCard
from hcbench.data.readers.fashionpedia import FashionMeta, FashionSample, decode_mask, encode_mask
from hcbench.data.transforms.image import load_rgb, to_tensor
from hcbench.data.types import DatasetSplit
from hcbench.families.fashion_eval import EVALUATOR
from hcbench.registry import ADAPTERS


def _opts(card: TaskCard, which: str):
    from hcbench.families.fashion import FAMILY

    return FAMILY.options(card, which)


# --------------------------------------------------------------------------- data
def fit_scale(h: int, w: int, box_h: float, box_w: float) -> float:
    """The scale that fits an h x w image into box_h x box_w keeping its aspect ratio (mmdet keep_ratio)."""
    return min(box_h / h, box_w / w)


class FashionDataset(Dataset):
    """Items ``{index, image (3 x H x W in [0, 1]), scale (sx, sy)}``; training items add ``boxes``
    (xyxy, resized px), ``labels`` (1..C), ``masks`` (N x H x W uint8), ``attributes`` (N x A)."""

    def __init__(self, split: DatasetSplit, card: TaskCard, train: bool):
        self.split, self.train = split, train
        self.meta: FashionMeta = split.meta
        aug = _opts(card, "augment")
        self.eval_hw = (card.input.height, card.input.width)
        self.scale = float(aug.scale or card.input.height)
        self.ratio = tuple(aug.ratio_range)
        self.crop = bool(aug.crop)
        self.flip = float(aug.flip) if train else 0.0
        self.label_of = self.meta.label_of()
        self.attr_index = self.meta.attribute_index()
        if train:  # images without an instance teach nothing but background (mmdet's filter_empty_gt)
            self.rows = [i for i, s in enumerate(split.samples) if s.annotations]
        else:
            self.rows = list(range(len(split.samples)))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        index = self.rows[i]
        s: FashionSample = self.split.samples[index]
        image = load_rgb(s.image)
        h0, w0 = image.shape[:2]
        rng = np.random.default_rng(np.random.randint(0, 2**31))  # the engine seeds numpy per item
        if self.train:
            r = rng.uniform(*self.ratio)
            f = fit_scale(h0, w0, self.scale * r, self.scale * r)
        else:
            f = fit_scale(h0, w0, *self.eval_hw)
        h, w = max(1, round(h0 * f)), max(1, round(w0 * f))
        resized = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR)) if (h, w) != (h0, w0) else image
        item: dict[str, Any] = {"index": index, "scale": (w / w0, h / h0), "size": (h0, w0),
                                "category_ids": self.meta.category_ids}
        if not self.train:
            item["image"] = to_tensor(resized)
            return item
        masks = [np.asarray(Image.fromarray(decode_mask(a.segmentation, h0, w0)).resize((w, h), Image.NEAREST))
                 for a in s.annotations]
        y0 = x0 = 0
        if self.crop and (h > self.scale or w > self.scale):
            ch, cw = min(h, int(self.scale)), min(w, int(self.scale))
            y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            resized = resized[y0:y0 + ch, x0:x0 + cw]
            masks = [m[y0:y0 + ch, x0:x0 + cw] for m in masks]
        if rng.random() < self.flip:
            resized = resized[:, ::-1]
            masks = [m[:, ::-1] for m in masks]
        boxes, labels, keep_masks, attrs = [], [], [], []
        for a, m in zip(s.annotations, masks, strict=True):
            ys, xs = np.nonzero(m)
            if len(ys) == 0:  # cropped away
                continue
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            labels.append(self.label_of[a.category_id])
            keep_masks.append(np.ascontiguousarray(m))
            vec = np.zeros(len(self.attr_index), np.float32)
            vec[[self.attr_index[t] for t in a.attribute_ids]] = 1.0
            attrs.append(vec)
        hh, ww = resized.shape[:2]
        item["image"] = to_tensor(np.ascontiguousarray(resized))
        item["boxes"] = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        item["labels"] = torch.tensor(labels, dtype=torch.int64)
        item["masks"] = torch.from_numpy(np.stack(keep_masks)) if keep_masks else torch.zeros((0, hh, ww), torch.uint8)
        item["attributes"] = torch.from_numpy(np.stack(attrs)) if attrs else torch.zeros((0, len(self.attr_index)))
        return item


# --------------------------------------------------------------------------- model
class AttributeRoIHeads(RoIHeads):
    """torchvision's box + mask RoI heads with a multi-label attribute predictor on the box features."""

    def __init__(self, *args, num_attributes: int, attribute_loss_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        dim = self.box_head.fc7.out_features
        self.attribute_predictor = nn.Linear(dim, num_attributes)
        self.attribute_loss_weight = attribute_loss_weight
        self._sampled: tuple | None = None

    def select_training_samples(self, proposals, targets):  # noqa: D102 - torchvision's, remembered
        out = super().select_training_samples(proposals, targets)
        self._sampled = out
        return out

    def _attribute_logits(self, features, boxes, image_shapes) -> torch.Tensor:
        feats = self.box_head(self.box_roi_pool(features, boxes, image_shapes))
        return self.attribute_predictor(feats)

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102
        result, losses = super().forward(features, proposals, image_shapes, targets)
        if self.training:
            assert self._sampled is not None and targets is not None
            props, matched, labels, _ = self._sampled
            self._sampled = None
            pos = [torch.where(lab > 0)[0] for lab in labels]
            boxes = [p[i] for p, i in zip(props, pos, strict=True)]
            goal = torch.cat([t["attributes"][m[i]] for t, m, i in zip(targets, matched, pos, strict=True)])
            logits = self._attribute_logits(features, boxes, image_shapes)
            if len(goal):
                loss = F.binary_cross_entropy_with_logits(logits, goal.to(logits.dtype))
            else:
                loss = logits.sum() * 0.0
            losses["loss_attribute"] = loss * self.attribute_loss_weight
        else:
            boxes = [r["boxes"] for r in result]
            probs = torch.sigmoid(self._attribute_logits(features, boxes, image_shapes).float())
            for r, p in zip(result, probs.split([len(b) for b in boxes]), strict=True):
                r["attributes"] = p
        return result, losses


class _SharedMask(nn.Module):
    """A class-agnostic mask predictor: one mask logit map per RoI, repeated for every category, so
    torchvision's mask loss and inference (which pick the channel of the RoI's label) use it for all."""

    def __init__(self, predictor: nn.Module, num_classes: int):
        super().__init__()
        self.predictor, self.num_classes = predictor, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.predictor(x).expand(-1, self.num_classes, -1, -1)


class _SharedBoxPredictor(nn.Module):
    """FastRCNNPredictor with class-agnostic box regression: one set of deltas per RoI, repeated for
    every category, so torchvision's loss (deltas of the RoI's label) and decoding use it for all."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x).repeat(1, self.num_classes)


class FashionSegmenter(nn.Module):
    """``forward(images, targets=None)``: Mask R-CNN + attribute losses when training; detections with
    ``boxes``, ``labels`` (1..C), ``scores``, ``masks`` (N x 1 x H x W) and ``attributes`` in eval."""

    def __init__(self, backbone: Backbone, card: TaskCard, num_classes: int, num_attributes: int):
        super().__init__()
        a, ev = _opts(card, "adapter"), _opts(card, "eval.options")
        self.backbone = backbone
        pyramid = SimpleFeaturePyramid(backbone.embed_dim, backbone.stride, a.pyramid_channels,
                                       tuple(a.pyramid_scales))
        strides = pyramid.strides
        sizes = list(a.anchor_sizes) if a.anchor_sizes else [8.0 * s for s in strides]
        if len(sizes) != len(strides):
            raise ValueError(f"card {card.name}: adapter.anchor_sizes has {len(sizes)} sizes for "
                             f"{len(strides)} pyramid levels")
        anchors = AnchorGenerator(tuple((float(s),) for s in sizes), (tuple(a.anchor_ratios),) * len(strides))
        names = [str(i) for i in range(len(strides))]
        ch, mc = a.pyramid_channels, a.mask_head_channels
        det = MaskRCNN(
            _PyramidBody(backbone, pyramid), num_classes=None, rpn_anchor_generator=anchors,
            box_roi_pool=MultiScaleRoIAlign(names, 7, 2), mask_roi_pool=MultiScaleRoIAlign(names, 14, 2),
            box_head=TwoMLPHead(ch * 7 * 7, a.box_head_dim),
            box_predictor=(_SharedBoxPredictor(a.box_head_dim, num_classes + 1) if a.box_class_agnostic
                           else FastRCNNPredictor(a.box_head_dim, num_classes + 1)),
            mask_head=MaskRCNNHeads(ch, [a.mask_head_channels] * a.mask_head_convs, 1),
            mask_predictor=(_SharedMask(MaskRCNNPredictor(mc, mc, 1), num_classes + 1) if a.mask_class_agnostic
                            else MaskRCNNPredictor(mc, mc, num_classes + 1)),
            rpn_pre_nms_top_n_train=a.rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=a.rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=a.rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=a.rpn_post_nms_top_n_test,
            rpn_batch_size_per_image=a.rpn_batch_size_per_image, box_batch_size_per_image=a.box_batch_size_per_image,
            box_score_thresh=ev.score_thresh, box_nms_thresh=ev.nms_thresh, box_detections_per_img=ev.detections_per_img,
        )
        old = det.roi_heads
        heads = AttributeRoIHeads(
            old.box_roi_pool, old.box_head, old.box_predictor, a.box_fg_iou_thresh, a.box_bg_iou_thresh,
            a.box_batch_size_per_image, a.box_positive_fraction, None, ev.score_thresh, ev.nms_thresh,
            ev.detections_per_img, mask_roi_pool=old.mask_roi_pool, mask_head=old.mask_head,
            mask_predictor=old.mask_predictor, num_attributes=num_attributes,
            attribute_loss_weight=a.attribute_loss_weight)
        det.roi_heads = heads
        divisible = math.lcm(max(strides), backbone.stride)
        det.transform = _FixedSizeTransform(card.input.height, card.input.width, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0],
                                            size_divisible=divisible, pad_colour=tuple(backbone.mean))
        self.detector = det

    def forward(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None):
        return self.detector(images, targets)


# --------------------------------------------------------------------------- adapter
class FashionAdapter:
    family = "fashion"
    predictions_suffix = ".json"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        split = role_split(card, root, role, EVALUATOR, limit)
        ds = FashionDataset(split, card, train=role == "train")
        if not len(ds):
            raise ValueError(f"{card.dataset.name}/{split.split}: no image with an annotation to train on")
        return ds, split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": [it["image"] for it in items],
            "scales": torch.tensor([it["scale"] for it in items], dtype=torch.float32),
            "sizes": [tuple(it["size"]) for it in items],  # original (height, width)
            "category_ids": torch.tensor(items[0]["category_ids"], dtype=torch.long),  # label k -> id [k - 1]
        }
        if "boxes" in items[0]:
            batch["targets"] = [{k: it[k] for k in ("boxes", "labels", "masks", "attributes")} for it in items]
        return batch

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        from hcbench.data.cards import get_dataset_card
        from hcbench.families.fashion import dataset_meta

        meta = dataset_meta(get_dataset_card(card.dataset.name))
        n_attr = int(get_dataset_card(card.dataset.name).options.get("num_attributes", 0))
        if not meta.num_classes or not n_attr:
            raise ValueError(f"dataset card {card.dataset.name!r} must list 'classes' and options.num_attributes")
        return FashionSegmenter(backbone, card, meta.num_classes, n_attr)

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        parts = model(batch["images"], batch["targets"])
        total = sum(parts.values())
        return {"loss": total, **{k: v.detach() for k, v in parts.items()}}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        ev = _opts(card, "eval.options")
        dets = model(batch["images"])
        cat_ids = batch["category_ids"].cpu()
        out = []
        for i, d, (sx, sy), (h, w) in zip(batch["index"].tolist(), dets, batch["scales"].tolist(), batch["sizes"],
                                          strict=True):
            b = d["boxes"].float().cpu() / torch.tensor([sx, sy, sx, sy])  # back to original pixels
            xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1)
            masks = d["masks"].float()
            if len(masks):
                masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
            rles = [encode_mask((m[0] >= ev.mask_thresh).cpu().numpy()) for m in masks]
            out.append({"index": int(i), "boxes": xywh, "scores": d["scores"].float().cpu(),
                        "labels": cat_ids[d["labels"].cpu() - 1], "masks": rles,
                        "attributes": d["attributes"].float().cpu()})
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


ADAPTER = FashionAdapter()  # the instance hcbench.families.fashion.FAMILY.adapter names
ADAPTERS.add("fashion", ADAPTER)
