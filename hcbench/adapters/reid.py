"""Person re-identification: global embedding -> BNNeck -> bias-free ID classifier.

The model follows the ReID strong baseline (Luo et al., "Bag of Tricks and a Strong Baseline for
Deep Person Re-identification", 2019) as TransReID uses it on a ViT: the backbone's global
embedding (CLS token) is the feature ``f``; a BatchNorm1d whose bias is frozen at 0 (the BNNeck)
gives ``f_bn``; a linear layer without bias maps ``f_bn`` to identity logits. Training loss =
``id_loss_weight`` x cross-entropy (label smoothing) on the logits + ``triplet_weight`` x batch-hard
triplet loss on ``f`` (Euclidean distances, hardest positive and hardest negative per anchor).
Batches are P identities x K instances (:class:`RandomIdentitySampler`). Images reach the model as
``[0, 1]`` floats and are normalised inside it with the backbone's own mean/std.

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

``eval_limit`` keeps the first N queries, every gallery image of their identities, and the first
N other gallery images, so a smoke run still has a true match for each query.

Predictions file (``.npz``, the ``hcbench score reid`` format): ``query_feats`` (Q x D float32),
``gallery_feats`` (G x D), ``query_pids``, ``gallery_pids``, ``query_camids``, ``gallery_camids``
(int64) and ``query_names`` / ``gallery_names`` (image paths relative to the data root).
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

from hcbench.adapters.base import split_name, split_root
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import read_split
from hcbench.data.transforms.image import IMAGENET_MEAN, load_rgb
from hcbench.data.types import DatasetSplit, ReIDSample
from hcbench.registry import ADAPTERS

FEATURE_CHOICES = ("before_bn", "after_bn")


# --------------------------------------------------------------------------- data
def _writable(a: np.ndarray) -> np.ndarray:
    """PIL-backed arrays are read-only; torchvision wraps them without copying and warns."""
    return a if a.flags.writeable else a.copy()

def image_transform(size: tuple[int, int], train: bool, flip: float = 0.5, pad: int = 10,
                    erase: float = 0.5):
    """H x W x 3 uint8 -> 3 x H x W float in [0, 1]; normalisation happens in the model so that it
    always uses the backbone's statistics. Erased rectangles get the ImageNet mean pixel."""
    from torchvision.transforms import v2

    from hcbench.data.transforms.reid import random_erasing

    steps: list[Any] = [v2.ToImage(), v2.Resize(list(size), antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip(flip))
        if pad > 0:
            steps += [v2.Pad(pad), v2.RandomCrop(list(size))]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train and erase > 0:
        steps.append(random_erasing(erase, mean=IMAGENET_MEAN))
    return v2.Compose(steps)


class ReIDDataset(Dataset):
    """Items ``{index, image, pid, camid}``; ``pid`` is the relabelled 0..N-1 id when training."""

    def __init__(self, split: DatasetSplit, transform, labels: list[int]):
        self.split, self.transform, self.labels = split, transform, labels

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s: ReIDSample = self.split.samples[i]
        image = self.transform(_writable(load_rgb(s.image)))
        return {"index": i, "image": image, "pid": self.labels[i], "camid": s.camid}


def relabel(samples: list[ReIDSample]) -> tuple[list[int], int]:
    """Training pids -> 0..N-1 in sorted pid order; returns (labels, N)."""
    uniq = sorted({s.pid for s in samples})
    lut = {p: k for k, p in enumerate(uniq)}
    return [lut[s.pid] for s in samples], len(uniq)


def limit_test_split(split: DatasetSplit, limit: int) -> DatasetSplit:
    """First ``limit`` queries + all gallery images of their pids + the first ``limit`` others."""
    queries = [s for s in split.samples if s.role == "query"][:limit]
    pids = {s.pid for s in queries}
    gallery = [s for s in split.samples if s.role == "gallery"]
    others = [s for s in gallery if s.pid not in pids][:limit]
    keep = {id(s) for s in others} | {id(s) for s in gallery if s.pid in pids}
    samples = queries + [s for s in gallery if id(s) in keep]
    return DatasetSplit(split.name, split.split, split.family, samples, split.meta, split.files, dict(split.extra))


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
        self.register_buffer("mean", torch.tensor(backbone.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(backbone.std, dtype=torch.float32).view(1, 3, 1, 1))
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: a shift would only move the ID decision boundary
        self.classifier = nn.Linear(dim, num_ids, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)  # as the strong baseline initialises it
        nn.init.constant_(self.bnneck.weight, 1.0)
        nn.init.constant_(self.bnneck.bias, 0.0)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feat = self.backbone((images - self.mean) / self.std).embedding
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


def _relative(path: Path, root: Path | None) -> str:
    p = Path(path)
    if root is not None and p.is_relative_to(root):
        return p.relative_to(root).as_posix()
    return p.as_posix()


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
        split = read_split(card.dataset.name, which, root)
        if limit is not None:
            split = limit_test_split(split, limit)
        roles = {s.role for s in split.samples}
        if not {"query", "gallery"} <= roles:
            raise ValueError(f"{card.dataset.name}/{which}: an evaluation split needs query and gallery "
                             f"images, found roles {sorted(roles)}")
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
        from hcbench.results.store import atomic_write_bytes

        by_index = {int(p["index"]): p for p in predictions}
        root = split_root(split)
        arrays: dict[str, np.ndarray] = {}
        for role in ("query", "gallery"):
            idx = [i for i, s in enumerate(split.samples) if s.role == role]
            missing = [i for i in idx if i not in by_index]
            if missing:
                raise ValueError(f"{card.name}: no prediction for {len(missing)} {role} images "
                                 f"(first: {split.samples[missing[0]].image})")
            feats = [np.asarray(torch.as_tensor(by_index[i]["feat"]).float().numpy()) for i in idx]
            arrays[f"{role}_feats"] = np.stack(feats).astype(np.float32)
            arrays[f"{role}_pids"] = np.array([split.samples[i].pid for i in idx], np.int64)
            arrays[f"{role}_camids"] = np.array([split.samples[i].camid for i in idx], np.int64)
            arrays[f"{role}_names"] = np.array([_relative(split.samples[i].image, root) for i in idx], dtype=str)
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        path = Path(path)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        from hcbench.metrics.reid import evaluate_reid

        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        need = [f"{r}_{k}" for r in ("query", "gallery") for k in ("feats", "pids", "camids")]
        absent = [k for k in need if k not in data]
        if absent:
            raise ValueError(f"{path}: predictions file lacks {absent}")
        for role in ("query", "gallery"):  # the identities come from the split, never from the file alone
            want = np.array([s.pid for s in split.samples if s.role == role], np.int64)
            cams = np.array([s.camid for s in split.samples if s.role == role], np.int64)
            if len(want) != len(data[f"{role}_feats"]):
                raise ValueError(f"{path}: {len(data[f'{role}_feats'])} {role} features for {len(want)} "
                                 f"{role} images in {split.name}/{split.split}")
            if not (np.array_equal(want, data[f"{role}_pids"]) and np.array_equal(cams, data[f"{role}_camids"])):
                raise ValueError(f"{path}: {role} pids/camids differ from {split.name}/{split.split}")
        m = evaluate_reid(data["query_feats"], data["gallery_feats"], data["query_pids"], data["gallery_pids"],
                          data["query_camids"], data["gallery_camids"],
                          metric=str(card.eval.options.get("metric", "cosine")))
        return {k: float(m[k]) for k in ("mAP", "rank1", "rank5", "rank10", "mINP")}


def _feature_choice(card: TaskCard) -> str:
    f = str(card.eval.options.get("feature", "before_bn"))
    if f not in FEATURE_CHOICES:
        raise ValueError(f"card {card.name}: eval.options.feature must be one of {FEATURE_CHOICES}, got {f!r}")
    return f


ADAPTERS.add("reid", ReIDAdapter())
