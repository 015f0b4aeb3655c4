"""Pedestrian attribute recognition: pooled embedding -> linear (+ BN on the logits) -> A logits.

The head and loss follow the strong baseline of Jia et al., "Rethinking of Pedestrian Attribute
Recognition: A Reliable Evaluation under Zero-Shot Pedestrian Identity Setting" (2021; code
valencebond/Rethinking_of_PAR): the backbone's global embedding goes through one linear layer
followed by a BatchNorm1d over the A logits, trained with a weighted binary cross-entropy whose
per-attribute weights come from the positive ratio ``p`` of the training split: a positive label
weighs ``exp(1 - p)``, a negative one ``exp(p)`` (their ``ratio2weight``), summed over attributes
and averaged over the batch. Rare positives thus weigh up to e, common ones about 1.

``p`` is computed by :meth:`AttributeAdapter.build_data` from the training labels and travels in
every training batch (``batch["pos_ratio"]``), so the loss needs no state outside the batch.
Images reach the model as ``[0, 1]`` floats and are normalised inside it with the backbone's
mean/std. Prediction = sigmoid probabilities (averaged with the flipped image's when
``eval.flip_test``); an attribute is predicted present when its probability exceeds
``eval.options.threshold`` (0.5), as :func:`hcbench.metrics.attributes.attribute_metrics` scores it.

Card keys read here
- ``adapter.logit_bn`` (true): the BatchNorm1d on the logits.
- ``adapter.loss_weighting``: ``exp_ratio`` (default, the weighting above) or ``none`` (plain BCE).
- ``augment.flip`` (0.5), ``augment.pad`` (10; pad then random crop back to the input size).
- ``eval.flip_test``; ``eval.options.threshold`` (0.5).

Predictions file and scoring: :class:`hcbench.families.attributes_eval.AttributeEvaluator`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler

from hcbench.adapters.base import role_split
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import get_dataset_card
from hcbench.data.transforms.image import load_rgb
from hcbench.data.types import AttributeMeta, AttributeSample, DatasetSplit
from hcbench.families.attributes_eval import AttributeEvaluator
from hcbench.registry import ADAPTERS

WEIGHTINGS = ("exp_ratio", "none")


def _writable(a: np.ndarray) -> np.ndarray:
    """PIL-backed arrays are read-only; torchvision wraps them without copying and warns."""
    return a if a.flags.writeable else a.copy()


def image_transform(size: tuple[int, int], train: bool, flip: float = 0.5, pad: int = 10):
    """H x W x 3 uint8 -> 3 x H x W float in [0, 1] (Rethinking-PAR: resize, pad, crop, flip)."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage(), v2.Resize(list(size), antialias=True)]
    if train:
        if pad > 0:
            steps += [v2.Pad(pad), v2.RandomCrop(list(size))]
        steps.append(v2.RandomHorizontalFlip(flip))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def positive_ratio(labels: np.ndarray) -> np.ndarray:
    """Fraction of positive samples per attribute, float32 (A,)."""
    return np.asarray(labels, np.float64).mean(0).astype(np.float32)


def exp_ratio_weights(targets: torch.Tensor, pos_ratio: torch.Tensor) -> torch.Tensor:
    """``exp(1 - p)`` where the target is 1, ``exp(p)`` where it is 0 (Rethinking-PAR ``ratio2weight``)."""
    return torch.exp(targets * (1 - pos_ratio) + (1 - targets) * pos_ratio)


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, pos_ratio: torch.Tensor | None) -> torch.Tensor:
    """BCE with logits, weighted per element when ``pos_ratio`` is given; summed over attributes,
    averaged over samples."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    if pos_ratio is not None:
        loss = loss * exp_ratio_weights(targets.float(), pos_ratio.float().to(logits.device))
    return loss.sum(1).mean()


class AttributeDataset(Dataset):
    """Items ``{index, image, labels}`` (+ ``pos_ratio`` of the training split when training)."""

    def __init__(self, split: DatasetSplit, transform, pos_ratio: np.ndarray | None = None):
        self.split, self.transform = split, transform
        self.pos_ratio = None if pos_ratio is None else torch.from_numpy(pos_ratio)

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s: AttributeSample = self.split.samples[i]
        item = {"index": i, "image": self.transform(_writable(load_rgb(s.image))),
                "labels": torch.from_numpy(np.asarray(s.labels, np.float32))}
        if self.pos_ratio is not None:
            item["pos_ratio"] = self.pos_ratio
        return item


class AttributeModel(nn.Module):
    """``forward(images in [0, 1]) -> logits (B x A)``."""

    def __init__(self, backbone: Backbone, num_attributes: int, logit_bn: bool = True):
        super().__init__()
        self.backbone = backbone
        self.fc = nn.Linear(backbone.embed_dim, num_attributes)
        self.logit_bn = nn.BatchNorm1d(num_attributes) if logit_bn else nn.Identity()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        emb = self.backbone(images).embedding  # the backbone normalises [0, 1] input itself
        return self.logit_bn(self.fc(emb))


def _attribute_names(card: TaskCard) -> tuple[str, ...]:
    meta = get_dataset_card(card.dataset.name).meta()
    assert isinstance(meta, AttributeMeta)
    return meta.attribute_names


class AttributeAdapter:
    family = "attributes"
    predictions_suffix = ".npz"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        split = role_split(card, root, role, EVALUATOR, limit)
        if not split.samples:
            raise ValueError(f"{card.dataset.name}/{split.split}: the split is empty")
        size = (card.input.height, card.input.width)
        if role == "train":
            labels = np.stack([s.labels for s in split.samples])
            weighting = str(card.adapter.get("loss_weighting", "exp_ratio"))
            if weighting not in WEIGHTINGS:
                raise ValueError(f"card {card.name}: adapter.loss_weighting must be one of {WEIGHTINGS}, "
                                 f"got {weighting!r}")
            ratio = positive_ratio(labels) if weighting == "exp_ratio" else None
            aug = card.augment
            tf = image_transform(size, True, float(aug.get("flip", 0.5)), int(aug.get("pad", 10)))
            return AttributeDataset(split, tf, ratio), split
        return AttributeDataset(split, image_transform(size, False)), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": torch.stack([it["image"] for it in items]),
            "labels": torch.stack([it["labels"] for it in items]),
        }
        if "pos_ratio" in items[0]:
            batch["pos_ratio"] = items[0]["pos_ratio"]  # one vector for the whole training split
        return batch

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None  # a plain shuffle

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        return AttributeModel(backbone, len(_attribute_names(card)), bool(card.adapter.get("logit_bn", True)))

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        logits = model(batch["images"])
        loss = weighted_bce(logits, batch["labels"], batch.get("pos_ratio"))
        return {"loss": loss}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        images = batch["images"]
        probs = torch.sigmoid(model(images).float())
        if card.eval.flip_test:
            probs = (probs + torch.sigmoid(model(images.flip(-1)).float())) / 2
        return [{"index": int(i), "probs": p} for i, p in zip(batch["index"].tolist(), probs.cpu(), strict=True)]

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


EVALUATOR = AttributeEvaluator()  # predictions codec + metrics, shared with re-scoring and `hcbench score`


ADAPTER = AttributeAdapter()  # the instance hcbench.families.attributes.FAMILY.adapter names
ADAPTERS.add("attributes", ADAPTER)
