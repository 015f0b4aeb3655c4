"""Human-parsing adapter: FPN-lite decoder on the shared simple feature pyramid, CE loss.

Protocol-card keys this adapter reads (unknown keys are refused):

``adapter``
    ``head`` ("fpn"), ``pyramid_channels`` (256: width of the shared ViTDet-style pyramid),
    ``decoder_channels`` (256), ``dropout`` (0.1, before the classifier).
``augment``
    ``scale`` ([0.5, 2.0]: random rescale of the image after fitting it into the input size),
    ``flip`` (true), ``keep_ratio`` (true: images are fitted into ``input`` keeping their aspect
    ratio and padded, as mmseg's ``Resize(keep_ratio=True)``; false: resized to it).
``eval``
    ``flip_test``: average the softmax of the image and of its mirror (classes swapped back
    through the dataset's left/right pairs).

Dataset items: ``image`` uint8 ``3 x H x W`` (the model normalises with the backbone's
mean/std), ``label`` int64 ``H x W`` (train ids, 255 = ignore/padding), ``valid`` (the
``(h, w)`` of the image inside the padded input), ``orig_size`` and ``index``. Predictions
are label maps at the original image resolution; their file and scoring are
:class:`hcbench.families.parsing_eval.ParsingEvaluator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler, default_collate

from hcbench.adapters.base import role_split
from hcbench.backbones.features import Backbone
from hcbench.backbones.pyramid import SimpleFeaturePyramid
from hcbench.cards import TaskCard
from hcbench.data.cards import get_dataset_card
from hcbench.data.rng import rng_from_torch
from hcbench.data.types import DatasetSplit, ParsingMeta
from hcbench.families.parsing import ParsingAdapterOptions, ParsingAugment
from hcbench.families.parsing_eval import ParsingEvaluator
from hcbench.registry import ADAPTERS

# the defaults are the family's typed card options (hcbench.families.parsing), defined once
ADAPTER_DEFAULTS: dict[str, Any] = ParsingAdapterOptions().model_dump()
AUGMENT_DEFAULTS: dict[str, Any] = ParsingAugment().model_dump()


def _options(card: TaskCard, given: dict[str, Any], defaults: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"card {card.name!r}: unknown {where} key(s) {sorted(unknown)}; "
                         f"the parsing adapter knows {sorted(defaults)}")
    return {**defaults, **given}


def parsing_meta(card: TaskCard) -> ParsingMeta:
    meta = get_dataset_card(card.dataset.name).meta()
    if not isinstance(meta, ParsingMeta):
        raise ValueError(f"card {card.name!r}: dataset {card.dataset.name!r} is not a parsing dataset")
    return meta


def class_flip_index(meta: ParsingMeta) -> np.ndarray:
    """Channel permutation that swaps left/right classes of a mirrored prediction."""
    return meta.flip_lut()[: meta.num_classes].astype(np.int64)


def first_max_index(x: torch.Tensor) -> torch.Tensor:
    """``x.argmax(0)`` of a ``C x H x W`` tensor as uint8: the first channel holding the maximum.

    Found as the lowest channel equal to ``x.amax(0)``, because on the CPU torch's values-only
    reduction over channels is vectorised and the one returning indices is not: 2.5-3x faster
    for 20 x 480 x 360 (``max(0).indices`` was itself 2.3-3.6x faster than ``argmax(0)``), with
    the same index everywhere, ties included. NaN (never in a softmax of finite logits) and more
    than 255 channels take ``max(0).indices``."""
    c = x.shape[0]
    top = x.amax(0)
    if c > 255 or bool(torch.isnan(top).any()):
        return x.max(0).indices.to(torch.uint8)
    rank = torch.arange(c, 0, -1, dtype=torch.uint8, device=x.device).view(c, 1, 1)  # channel 0 ranks highest
    # nothing exceeds the maximum, so x >= top is x == top (and cheaper); bool -> uint8 is a free view
    hit = torch.ge(x, top).view(torch.uint8).mul_(rank)
    return c - hit.amax(0)


# --------------------------------------------------------------------------- data
def _fit_scale(h: int, w: int, size: tuple[int, int]) -> float:
    return min(size[0] / h, size[1] / w)


class ParsingDataset(Dataset):
    """Image + label pairs; training crops are randomly rescaled, flipped and cropped."""

    def __init__(self, split: DatasetSplit, card: TaskCard, train: bool):
        self.split = split
        self.meta: ParsingMeta = split.meta
        self.train = train
        self.size = (card.input.height, card.input.width)
        aug = _options(card, card.augment, AUGMENT_DEFAULTS, "augment")
        self.scale = (float(aug["scale"][0]), float(aug["scale"][1]))
        self.flip = bool(aug["flip"])
        self.keep_ratio = bool(aug["keep_ratio"])

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        # outside the engine: a generator drawn from torch's global RNG, so seeding torch repeats it
        return self.seeded_item(index, rng_from_torch() if self.train else None)

    def seeded_item(self, index: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """The item with its augmentation drawn from ``rng`` (the engine passes one per
        (seed, epoch, index): :func:`hcbench.data.rng.sample_rng`)."""
        from hcbench.data.transforms.parsing import load_pair, pad_to, resize, resized_random_crop

        image, label = load_pair(self.split.samples[index], self.meta)
        oh, ow = label.shape
        ignore = self.meta.ignore_index
        if self.train:
            rng = rng if rng is not None else rng_from_torch()
            s = float(rng.uniform(*self.scale))
            if self.keep_ratio:
                f = _fit_scale(oh, ow, self.size) * s
                th, tw = max(1, round(oh * f)), max(1, round(ow * f))
            else:
                th, tw = max(1, round(self.size[0] * s)), max(1, round(self.size[1] * s))
            flip = self.flip and rng.random() < 0.5
            # crop first, then resize only the window: rescale -> flip -> crop in one resample
            image, label = resized_random_crop(image, label, (th, tw), self.size, rng, self.meta, flip)
            valid = self.size
        else:
            if self.keep_ratio:
                f = _fit_scale(oh, ow, self.size)
                valid = (min(self.size[0], max(1, round(oh * f))), min(self.size[1], max(1, round(ow * f))))
            else:
                valid = self.size
            image, label = resize(image, label, valid)
            image, label = pad_to(image, label, self.size, ignore)
        return {
            "image": torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous(),  # copy: PIL arrays are read-only
            "label": torch.from_numpy(np.array(label)).long(),
            "valid": torch.tensor(valid, dtype=torch.long),
            "orig_size": torch.tensor((oh, ow), dtype=torch.long),
            "index": index,
        }


# --------------------------------------------------------------------------- model
def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FPNLiteHead(nn.Module):
    """Lateral 1x1 per pyramid level, top-down sum, 3x3 fuse at the finest level, 1x1 classifier."""

    def __init__(self, in_channels: int, num_levels: int, channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.lateral = nn.ModuleList(_conv_bn_relu(in_channels, channels, 1) for _ in range(num_levels))
        self.fuse = _conv_bn_relu(channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = self.lateral[-1](levels[-1])
        for lat, feat in zip(reversed(self.lateral[:-1]), reversed(levels[:-1]), strict=True):
            x = lat(feat) + F.interpolate(x, size=feat.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.dropout(self.fuse(x)))


class ParsingModel(nn.Module):
    """Backbone -> shared pyramid -> FPN-lite; returns logits at the input resolution.

    Inputs whose sides are not multiples of the backbone stride (473 x 473) are padded at the
    bottom/right to the next multiple, and the logits cropped back, so every logit stays
    aligned with its pixel.
    """

    def __init__(self, backbone: Backbone, pyramid: SimpleFeaturePyramid, head: FPNLiteHead, flip_index: np.ndarray):
        super().__init__()
        self.backbone = backbone
        self.pyramid = pyramid
        self.head = head
        self.register_buffer("flip_index", torch.as_tensor(flip_index, dtype=torch.long), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        s = int(self.backbone.stride)
        x = images.float() / 255.0  # the backbone normalises [0, 1] input with its own mean/std
        m = self.backbone.pixel_mean.to(x.dtype)
        x = F.pad(x - m, (0, -w % s, 0, -h % s)) + m  # pad with the mean colour (zero once normalised)
        logits = self.head(list(self.pyramid(self.backbone(x).dense).values()))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :h, :w]


# --------------------------------------------------------------------------- adapter
class ParsingAdapter:
    family = "parsing"
    predictions_suffix = ".npz"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        split = role_split(card, root, role, EVALUATOR, limit)
        return ParsingDataset(split, card, train=role == "train"), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return default_collate(items)

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        opts = _options(card, card.adapter, ADAPTER_DEFAULTS, "adapter")
        if opts["head"] != "fpn":
            raise ValueError(f"card {card.name!r}: the parsing adapter implements head 'fpn', not {opts['head']!r}")
        meta = parsing_meta(card)
        pyramid = SimpleFeaturePyramid(backbone.embed_dim, backbone.stride, int(opts["pyramid_channels"]))
        head = FPNLiteHead(pyramid.out_channels, len(pyramid.strides), int(opts["decoder_channels"]),
                           meta.num_classes, float(opts["dropout"]))
        return ParsingModel(backbone, pyramid, head, class_flip_index(meta))

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        label = batch["label"]
        logits = model(batch["image"]).float()
        ce = F.cross_entropy(logits, label, ignore_index=255)
        return {"loss": ce, "ce": ce.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        net: ParsingModel = getattr(model, "module", model)
        images = batch["image"]
        logits = model(images).float()
        mirrored = model(images.flip(-1)).float() if card.eval.flip_test else None
        out = []
        indices = batch["index"].tolist() if torch.is_tensor(batch["index"]) else list(batch["index"])
        for i, idx in enumerate(indices):
            vh, vw = (int(v) for v in batch["valid"][i])
            oh, ow = (int(v) for v in batch["orig_size"][i])
            # one image at a time and only its valid window: the softmax is per pixel, so the values
            # are those of the whole batch's softmax, without allocating (and page-faulting) four
            # batch-sized buffers; ~2x less time after the forward on CPU (issue 18)
            p = logits[i, :, :vh, :vw].softmax(0)
            if mirrored is not None:
                # the mirror's window sits at the right edge; flipped back it covers [:vw]
                m = mirrored[i, :, :vh, mirrored.shape[-1] - vw:].softmax(0)
                p = p.add_(m.index_select(0, net.flip_index).flip(-1)).mul_(0.5)
            p = F.interpolate(p[None], size=(oh, ow), mode="bilinear", align_corners=False)
            out.append({"index": int(idx), "label": first_max_index(p[0]).cpu().numpy()})
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


EVALUATOR = ParsingEvaluator()  # predictions codec + metrics, shared with re-scoring and `hcbench score`


ADAPTER = ParsingAdapter()  # the instance hcbench.families.parsing.FAMILY.adapter names
ADAPTERS.add("parsing", ADAPTER)
