"""Top-down pose adapter: ViTPose "simple" heatmap head, UDP targets, DARK-UDP decoding.

Protocol-card keys this adapter reads (unknown keys are refused, so a typo cannot silently
fall back to a default):

``adapter``
    ``head`` ("heatmap"), ``deconv_layers`` (2: the count for a stride-16 backbone, checked
    against ``heatmap_stride``; a backbone of stride ``s`` gets ``log2(s / heatmap_stride)`` so
    the heatmap is always ``input / heatmap_stride``), ``deconv_channels`` (256), ``deconv_kernel`` (4),
    ``final_kernel`` (1), ``heatmap_stride`` (4), ``loss_weight`` (1.0),
    ``codec: {type: udp_gaussian, sigma: 2, refine: dark|none, blur_kernel: 11}`` or
    ``codec: {type: msra_gaussian, sigma: 2, refine: quarter|none}`` (MSRA targets, quarter-pixel
    decoding, flip test shifted one pixel; :mod:`hcbench.adapters.pose_codec`).
``augment``
    ``flip`` (true), ``half_body`` (probability, 0.3), ``scale`` ([0.75, 1.25]), ``rotate``
    (degrees, 40), ``rotate_prob`` (0.6), ``shift`` (0.0), ``padding`` (box padding, 1.25).
``eval.options``
    ``sigmas`` (list, or a dataset name ``coco|aic|crowdpose``; default: the dataset card's),
    ``score_thr`` (0.2: keypoints above it make the instance score), ``nms`` (``oks`` |
    ``none``), ``nms_thr`` (0.9), ``pckh_thr`` (0.5), ``pck_thr`` (0.1, of the longer box side,
    for metric ``PCK``), ``crowd`` (CrowdPose easy/medium/hard;
    also on when the dataset card says ``iou_type: keypoints_crowd``), ``backend``
    (``hcbench`` (default) | ``pycocotools`` | ``faster-coco-eval``; the first two give identical numbers).
    ``eval.metrics`` picks the scorers: ``PCKh*`` (MPII, head-normalised), ``PCK``
    (box-normalised, matched by ``index``; ground-truth boxes only), the rest OKS AP/AR.

Dataset items: ``image`` uint8 ``3 x H x W`` (the model normalises with the backbone's
mean/std, so data loading never needs the backbone), ``heatmaps`` ``K x H/4 x W/4`` and
``weights`` ``K`` (training set only: evaluation never reads them), ``matrix`` (``2 x 3``
original -> input) and ``index``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler, default_collate

from hcbench.adapters.base import role_split
from hcbench.adapters.pose_codec import align_flipped, decode_heatmaps, encode_msra, encode_udp
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import get_dataset_card
from hcbench.data.rng import rng_from_torch
from hcbench.data.types import DatasetSplit, KeypointMeta
from hcbench.families.pose import PoseAdapterOptions, PoseAugment, PoseCodec
from hcbench.families.pose_eval import PoseEvaluator, card_options
from hcbench.registry import ADAPTERS

# the defaults are the family's typed card options (hcbench.families.pose), defined once
ADAPTER_DEFAULTS: dict[str, Any] = {**PoseAdapterOptions().model_dump(), "codec": {}}
CODEC_DEFAULTS: dict[str, Any] = PoseCodec().model_dump()
AUGMENT_DEFAULTS: dict[str, Any] = PoseAugment().model_dump()
# the sub-pixel refinements each codec defines, its default first
CODEC_REFINES: dict[str, tuple[str, ...]] = {"udp_gaussian": ("dark", "none"), "msra_gaussian": ("quarter", "none")}


def adapter_options(card: TaskCard) -> dict[str, Any]:
    opts = card_options(card, card.adapter, ADAPTER_DEFAULTS, "adapter")
    opts["codec"] = card_options(card, dict(opts["codec"]), CODEC_DEFAULTS, "adapter.codec")
    if 2 ** int(opts["deconv_layers"]) * int(opts["heatmap_stride"]) != 16:
        raise ValueError(f"card {card.name!r}: deconv_layers {opts['deconv_layers']} (stated for a stride-16 "
                         f"backbone) does not reach heatmap_stride {opts['heatmap_stride']}")
    codec = opts["codec"]
    if opts["head"] != "heatmap" or codec["type"] not in CODEC_REFINES:
        raise ValueError(f"card {card.name!r}: the pose adapter implements head 'heatmap' with codec "
                         f"{' or '.join(map(repr, CODEC_REFINES))}, not {opts['head']!r}/{codec['type']!r}")
    if "refine" not in dict(card.adapter.get("codec") or {}):  # each codec's own default refinement
        codec["refine"] = CODEC_REFINES[codec["type"]][0]
    if codec["refine"] not in CODEC_REFINES[codec["type"]]:
        raise ValueError(f"card {card.name!r}: adapter.codec.refine {codec['refine']!r} is not defined for "
                         f"codec {codec['type']!r}; use one of {list(CODEC_REFINES[codec['type']])}")
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
    """One item per person box: the crop, its target heatmaps (the card's codec) and the crop's affine matrix."""

    def __init__(self, split: DatasetSplit, card: TaskCard, train: bool, targets: bool = True):
        from hcbench.data.transforms.pose import TopDownTransform

        self.split = split
        self.train = train
        self.targets = targets  # False: no heatmaps/weights (evaluation never reads them)
        aug = card_options(card, card.augment, AUGMENT_DEFAULTS, "augment")
        self.transform = TopDownTransform(
            split.meta, (card.input.height, card.input.width), train=train, scale=tuple(aug["scale"]),
            rotate=float(aug["rotate"]), flip=bool(aug["flip"]), half_body=float(aug["half_body"]),
            padding=float(aug["padding"]), rotate_prob=float(aug["rotate_prob"]), shift=float(aug["shift"]))
        self.input_wh = (card.input.width, card.input.height)
        self.heatmap_wh = heatmap_size(card)
        self.sigma = float(adapter_options(card)["codec"]["sigma"])
        self.encode = encode_msra if adapter_options(card)["codec"]["type"] == "msra_gaussian" else encode_udp

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        # outside the engine: a generator drawn from torch's global RNG, so seeding torch repeats it
        return self.seeded_item(index, rng_from_torch() if self.train else None)

    def seeded_item(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """The item with its augmentation drawn from ``rng`` (the engine passes one per
        (seed, epoch, index): :func:`hcbench.data.rng.sample_rng`)."""
        crop = self.transform(self.split.samples[index], rng=rng if self.train else np.random.default_rng(index))
        item: dict[str, Any] = {
            "image": torch.from_numpy(np.ascontiguousarray(crop.image)).permute(2, 0, 1).contiguous(),
            "matrix": torch.from_numpy(np.asarray(crop.matrix, dtype=np.float64)),
            "index": index,
        }
        if self.targets:
            heat, weights = self.encode(crop.keypoints[:, :2], crop.keypoints[:, 2], self.input_wh,
                                        self.heatmap_wh, self.sigma)
            item["heatmaps"], item["weights"] = torch.from_numpy(heat), torch.from_numpy(weights)
        return item


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
    """Backbone + heatmap head. Takes uint8 (or 0..255 float) images; the backbone normalises."""

    def __init__(self, backbone: Backbone, head: HeatmapHead, flip_index: np.ndarray,
                 input_wh: tuple[int, int]):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.input_wh = input_wh
        self.register_buffer("flip_index", torch.as_tensor(flip_index, dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float() / 255.0  # the backbone normalises [0, 1] input with its own mean/std
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
        split = role_split(card, root, role, EVALUATOR, limit)
        if role == "train":  # persons without a labelled keypoint carry no training signal
            split.samples = [s for s in split.samples if s.num_visible > 0]
        train = role == "train"
        return TopDownDataset(split, card, train=train, targets=train), split

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
            back = align_flipped(flip_heatmaps(flipped, net.flip_index.cpu().numpy()), codec["type"])
            heat = 0.5 * (heat + back)
        coords, scores = decode_heatmaps(heat, net.input_wh, refine=codec["refine"],
                                         blur_kernel=int(codec["blur_kernel"]), codec=codec["type"])
        coords, scores = coords.cpu().numpy(), scores.cpu().numpy()
        mats = batch["matrix"].cpu().numpy()
        out = []
        for i, idx in enumerate(batch["index"].tolist() if torch.is_tensor(batch["index"]) else batch["index"]):
            pts = transform_points(coords[i].astype(np.float64), invert_affine(mats[i]))
            out.append({"index": int(idx), "keypoints": pts.astype(np.float32), "scores": scores[i].astype(np.float32)})
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


EVALUATOR = PoseEvaluator()  # the predictions codec + metrics, shared with re-scoring and `hcbench score`
ADAPTER = PoseAdapter()  # the instance hcbench.families.pose.FAMILY.adapter names
ADAPTERS.add("pose", ADAPTER)
