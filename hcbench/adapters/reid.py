"""Person re-identification: global embedding -> BNNeck -> bias-free ID classifier.

The model follows the ReID strong baseline (Luo et al., "Bag of Tricks and a Strong Baseline for
Deep Person Re-identification", 2019) as TransReID uses it on a ViT: the backbone's global
embedding (CLS token) is the feature ``f``; a BatchNorm1d whose bias is frozen at 0 (the BNNeck)
gives ``f_bn``; a linear layer without bias maps ``f_bn`` to identity logits. Training loss =
``id_loss_weight`` x cross-entropy (label smoothing) on the logits + ``triplet_weight`` x batch-hard
triplet loss on ``f`` (Euclidean distances, hardest positive and hardest negative per anchor).
Batches are P identities x K instances (:class:`RandomIdentitySampler`). Images reach the model as
``[0, 1]`` floats; the backbone normalises them with its own mean/std.

Evaluation: the feature before (or after) the BNNeck, averaged with the horizontally flipped
image's when ``eval.flip_test``, L2-normalised; ranked by cosine distance under the Market-1501
protocol (:func:`hcbench.metrics.reid.evaluate_reid`).

Card keys read here
- ``adapter.num_ids`` (required): training identities of the full train split (Market-1501 751,
  MSMT17 1041, CUHK03-NP 767). The classifier is built before the data is read, so the number is
  part of the protocol; ``build_data`` checks that the split's identities fit.
- ``adapter.num_instances`` (4): K, images per identity in a batch; P = ``schedule.batch_size / K``.
- ``adapter.label_smoothing`` (0.1), ``adapter.triplet_margin`` (0.3; ``null`` = soft margin),
  ``adapter.id_loss_weight`` (1.0), ``adapter.triplet_weight`` (1.0).
- ``augment.flip`` (0.5), ``augment.pad`` (10; pad then random crop back to the input size),
  ``augment.random_erasing`` (0.5; one rectangle of 2%..40% area filled with the ImageNet mean).
- ``eval.flip_test``; ``eval.options.feature``: ``before_bn`` (default, TransReID) or
  ``after_bn`` (BoT); ``eval.options.metric``: ``cosine`` (default) or ``euclidean``.

Predictions file, ``eval_limit`` rule and scoring: :class:`hcbench.families.reid_eval.ReIDEvaluator`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler

from hcbench.adapters.base import split_name
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import read_split
from hcbench.data.transforms.image import load_rgb
from hcbench.data.types import DatasetSplit, ReIDSample
from hcbench.families.reid_eval import ReIDEvaluator, limit_test_split  # noqa: F401
from hcbench.registry import ADAPTERS

FEATURE_CHOICES = ("before_bn", "after_bn")


# --------------------------------------------------------------------------- data
def image_transform(size: tuple[int, int], train: bool, flip: float = 0.5, pad: int = 10,
                    erase: float = 0.5):
    """H x W x 3 uint8 -> 3 x H x W float in [0, 1]; normalisation happens in the model so that it
    always uses the backbone's statistics. Erased rectangles get the ImageNet mean pixel.
    Training randomness: the ``rng`` the dataset passes (:class:`~hcbench.data.transforms.reid.ReIDCrop`)."""
    from hcbench.data.transforms.reid import ReIDCrop

    return ReIDCrop(size, train, flip=flip, pad=pad, erase=erase)


class ReIDDataset(Dataset):
    """Items ``{index, image, pid, camid}``; ``pid`` is the relabelled 0..N-1 id when training."""

    def __init__(self, split: DatasetSplit, transform, labels: list[int]):
        self.split, self.transform, self.labels = split, transform, labels

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.seeded_item(i, None)

    def seeded_item(self, i: int, rng: np.random.Generator | None) -> dict[str, Any]:
        """The item with its augmentation drawn from ``rng`` (None: from torch's global RNG)."""
        s: ReIDSample = self.split.samples[i]
        image = self.transform(load_rgb(s.image), rng=rng)
        return {"index": i, "image": image, "pid": self.labels[i], "camid": s.camid}


def relabel(samples: list[ReIDSample]) -> tuple[list[int], int]:
    """Training pids -> 0..N-1 in sorted pid order; returns (labels, N)."""
    uniq = sorted({s.pid for s in samples})
    lut = {p: k for k, p in enumerate(uniq)}
    return [lut[s.pid] for s in samples], len(uniq)


class RandomIdentitySampler(Sampler[int]):
    """P x K sampling: every consecutive ``batch_size`` indices hold P distinct identities with K
    images each. An identity with fewer than K images is sampled with replacement; identities are
    drawn without replacement until exhausted, then a fresh pass starts, so the epoch always has
    ``num_batches`` full batches (the engine expects ``len(dataset) // batch_size`` of them)."""

    def __init__(self, labels: list[int], batch_size: int, num_instances: int = 4, seed: int = 0,
                 num_batches: int | None = None):
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(f"batch size {batch_size} is not a multiple of num_instances {num_instances}")
        self.k = num_instances
        self.p = batch_size // num_instances
        self.by_id: dict[int, list[int]] = defaultdict(list)
        for i, lab in enumerate(labels):
            self.by_id[int(lab)].append(i)
        if len(self.by_id) < self.p:
            raise ValueError(f"P x K sampling needs {self.p} identities per batch (batch {batch_size} / K "
                             f"{num_instances}) but the training split has only {len(self.by_id)}")
        self.batch_size = batch_size
        self.num_batches = num_batches if num_batches is not None else max(len(labels) // batch_size, 1)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _chunks(self, rng: np.random.Generator) -> dict[int, list[list[int]]]:
        out = {}
        for pid, idx in self.by_id.items():
            idx = list(rng.choice(idx, size=self.k, replace=True)) if len(idx) < self.k else list(rng.permutation(idx))
            out[pid] = [idx[j:j + self.k] for j in range(0, len(idx) - self.k + 1, self.k)]
        return out

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = self._chunks(rng)
        out: list[int] = []
        for _ in range(self.num_batches):
            ready = [pid for pid, c in chunks.items() if c]
            if len(ready) < self.p:  # pass exhausted: reshuffle every identity
                chunks = self._chunks(rng)
                ready = list(chunks)
            for pid in rng.choice(ready, size=self.p, replace=False):
                out += [int(i) for i in chunks[int(pid)].pop()]
        return iter(out)


# --------------------------------------------------------------------------- model
class ReIDModel(nn.Module):
    """``forward(images in [0, 1]) -> {"feat", "feat_bn", "logits"}`` (logits only when training)."""

    def __init__(self, backbone: Backbone, num_ids: int):
        super().__init__()
        self.backbone = backbone
        dim = backbone.embed_dim
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: a shift would only move the ID decision boundary
        self.classifier = nn.Linear(dim, num_ids, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)  # as the strong baseline initialises it
        nn.init.constant_(self.bnneck.weight, 1.0)
        nn.init.constant_(self.bnneck.bias, 0.0)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.backbone(images).embedding  # the backbone normalises [0, 1] input itself
        feat_bn = self.bnneck(feat)
        out = {"feat": feat, "feat_bn": feat_bn}
        if self.training:
            out["logits"] = self.classifier(feat_bn)
        return out


def batch_hard_triplet(feat: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al., 2017) with Euclidean distances; ``margin=None``
    uses the soft margin ``softplus(d_ap - d_an)``. Anchors lacking a positive or a negative are
    skipped."""
    feat = feat.float()
    d2 = torch.cdist(feat, feat).pow(2)
    dist = d2.clamp_min(1e-12).sqrt()  # the clamp keeps the gradient finite on the zero diagonal
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=feat.device)
    pos_mask, neg_mask = same & ~eye, ~same
    valid = pos_mask.any(1) & neg_mask.any(1)
    if not bool(valid.any()):
        return feat.sum() * 0.0
    d_ap = dist.masked_fill(~pos_mask, float("-inf")).amax(1)[valid]
    d_an = dist.masked_fill(~neg_mask, float("inf")).amin(1)[valid]
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


# --------------------------------------------------------------------------- adapter
def _input_size(card: TaskCard) -> tuple[int, int]:
    return card.input.height, card.input.width


def _num_ids(card: TaskCard) -> int:
    n = card.adapter.get("num_ids")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"card {card.name}: adapter.num_ids (the number of training identities) is required "
                         f"for the ReID classifier, got {n!r}")
    return n


class ReIDAdapter:
    family = "reid"
    predictions_suffix = ".npz"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        which = split_name(card, role)
        aug = card.augment
        if role == "train":
            split = read_split(card.dataset.name, which, root, limit=limit)
            bad = [s for s in split.samples if s.role != "train"]
            if bad:
                raise ValueError(f"{card.dataset.name}/{which}: training split holds {bad[0].role} images "
                                 f"(e.g. {bad[0].image}); pick a train split")
            labels, n = relabel(split.samples)
            if n > _num_ids(card):
                raise ValueError(f"{card.dataset.name}/{which} has {n} training identities but card "
                                 f"{card.name} declares adapter.num_ids={_num_ids(card)}")
            tf = image_transform(_input_size(card), True, float(aug.get("flip", 0.5)), int(aug.get("pad", 10)),
                                 float(aug.get("random_erasing", 0.5)))
            return ReIDDataset(split, tf, labels), split
        split = EVALUATOR.eval_split(card, root, limit)  # re-scoring and `hcbench score` read the same split
        return ReIDDataset(split, image_transform(_input_size(card), False), [s.pid for s in split.samples]), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": torch.stack([it["image"] for it in items]),
            "pids": torch.tensor([it["pid"] for it in items], dtype=torch.long),
            "camids": torch.tensor([it["camid"] for it in items], dtype=torch.long),
        }

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        if not isinstance(dataset, ReIDDataset):
            raise TypeError(f"expected the dataset built by ReIDAdapter.build_data, got {type(dataset).__name__}")
        k = int(card.adapter.get("num_instances", 4))
        return RandomIdentitySampler(dataset.labels, card.schedule.batch_size, k, seed=seed)

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        model = ReIDModel(backbone, _num_ids(card))
        a = card.adapter
        margin = a.get("triplet_margin", 0.3)
        model.loss_cfg = {"label_smoothing": float(a.get("label_smoothing", 0.1)),
                          "triplet_margin": None if margin is None else float(margin),
                          "id_loss_weight": float(a.get("id_loss_weight", 1.0)),
                          "triplet_weight": float(a.get("triplet_weight", 1.0))}
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        cfg = getattr(model, "module", model).loss_cfg  # model may arrive wrapped in DDP
        out = model(batch["images"])
        pids = batch["pids"]
        id_loss = F.cross_entropy(out["logits"].float(), pids, label_smoothing=cfg["label_smoothing"])
        tri = batch_hard_triplet(out["feat"], pids, cfg["triplet_margin"])
        total = cfg["id_loss_weight"] * id_loss + cfg["triplet_weight"] * tri
        return {"loss": total, "id": id_loss.detach(), "triplet": tri.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        key = "feat_bn" if _feature_choice(card) == "after_bn" else "feat"
        images = batch["images"]
        feat = model(images)[key].float()
        if card.eval.flip_test:
            feat = (feat + model(images.flip(-1))[key].float()) / 2
        feat = F.normalize(feat, dim=1)
        return [{"index": int(i), "feat": f} for i, f in zip(batch["index"].tolist(), feat.cpu(), strict=True)]

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        return EVALUATOR.write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return EVALUATOR.score(path, split, card)


EVALUATOR = ReIDEvaluator()  # predictions codec + metrics, shared with re-scoring and `hcbench score`


def _feature_choice(card: TaskCard) -> str:
    f = str(card.eval.options.get("feature", "before_bn"))
    if f not in FEATURE_CHOICES:
        raise ValueError(f"card {card.name}: eval.options.feature must be one of {FEATURE_CHOICES}, got {f!r}")
    return f


ADAPTER = ReIDAdapter()  # the instance hcbench.families.reid.FAMILY.adapter names
ADAPTERS.add("reid", ADAPTER)
