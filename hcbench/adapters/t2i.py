"""Text-to-image person retrieval, IRRA style (Jiang & Ye, "Cross-Modal Implicit Relation
Reasoning and Aligning for Text-to-Image Person Retrieval", CVPR 2023).

The registered backbone is the image encoder: its global embedding, through a bias-free linear
projection (CLIP's ``visual.proj``), is the image feature. The text encoder is a CLIP text
transformer (:mod:`hcbench.adapters.t2i_text`), random or loaded from an OpenAI-layout
checkpoint; its EOT feature times ``text_projection`` is the text feature. Both live in one
``embed_dim`` space and are compared by cosine similarity.

Losses (IRRA ``model/objectives.py``), summed:
- SDM, similarity distribution matching: for image->text and text->image, the KL divergence
  between the softmax of ``cos / temperature`` over the batch and the identity-match matrix
  normalised per row, ``sum_j p_ij (log p_ij - log(q_ij + 1e-8))``, averaged over the batch;
- ID: one bias-carrying linear classifier over the training identities applied to the image
  and to the text feature, ``(CE_img + CE_txt) / 2 * id_loss_weight``;
- MLM (``adapter.mlm: true``): 15% of caption word tokens masked BERT style; the masked
  caption's token features attend to the image tokens (global + patch tokens, projected) in one
  cross-attention, go through ``cmt_depth`` transformer blocks and an MLM head over the CLIP
  vocabulary; CE on the masked positions, times ``mlm_loss_weight``.

Data: a training item is one (image, caption) pair -- every caption of every training image
-- shuffled at random (IRRA's ``sampler random``), identity labels relabelled 0..N-1. Evaluation
embeds every test image and every test caption once; the items of the evaluation dataset are
the images (indices ``0..I-1``) followed by the captions in split order.

Card keys read here: ``adapter`` (:class:`hcbench.families.t2i.T2IAdapterOptions`): ``num_ids``,
``embed_dim``, ``temperature``, ``id_loss_weight``, ``sdm_loss_weight``, ``mlm``,
``mlm_loss_weight``, ``cmt_depth``, ``feature_norm`` (``none`` = IRRA; ``batchnorm`` centres each
modality's features, for two random-init towers, see :class:`T2IModel`), ``text`` {``layers``,
``width``, ``heads``, ``context_length``, ``checkpoint``}; ``augment``: ``flip``, ``pad``,
``random_erasing`` (IRRA ``img_aug``).

``eval_limit`` keeps the first N images plus every other image of their identities, with all
their captions, so every caption still has a true match.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Sampler

from hcbench.adapters.base import split_name
from hcbench.adapters.t2i_text import (
    VOCAB_SIZE,
    QuickGELU,
    TextEncoder,
    Transformer,
    load_clip_text,
    mask_tokens,
    tokenize,
)
from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.cards import read_split
from hcbench.data.transforms.image import IMAGENET_MEAN, load_rgb
from hcbench.data.types import DatasetSplit
from hcbench.errors import ConfigError

log = logging.getLogger("hcbench.t2i")


def _opts(card: TaskCard, which: str = "adapter") -> Any:
    from hcbench.families.base import get_family

    return get_family("t2i").options(card, which)


# --------------------------------------------------------------------------- data
def image_transform(size: tuple[int, int], train: bool, flip: float = 0.5, pad: int = 10, erase: float = 0.5):
    """IRRA's ``build_transforms``: resize; when training (``img_aug``) flip, pad + random crop and
    random erasing (2%..40% of the area, filled with the mean pixel). Output in [0, 1]: the backbone
    normalises with its own statistics."""
    from torchvision.transforms import v2

    from hcbench.data.transforms.reid import random_erasing

    steps: list[Any] = [v2.ToImage(), v2.Resize(list(size), antialias=True)]
    if train:
        if flip > 0:
            steps.append(v2.RandomHorizontalFlip(flip))
        if pad > 0:
            steps += [v2.Pad(pad), v2.RandomCrop(list(size))]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if train and erase > 0:
        steps.append(random_erasing(erase, mean=IMAGENET_MEAN))
    return v2.Compose(steps)


def _image(path: Path, transform) -> torch.Tensor:
    a = load_rgb(path)
    return transform(a if a.flags.writeable else a.copy())


def relabel(pids: list[int]) -> tuple[list[int], int]:
    uniq = sorted(set(pids))
    lut = {p: k for k, p in enumerate(uniq)}
    return [lut[p] for p in pids], len(uniq)


class T2ITrainDataset(Dataset):
    """One item per (image, caption): ``{index, image, tokens, pid[, mlm_tokens, mlm_labels]}``."""

    def __init__(self, split: DatasetSplit, transform, context_length: int, mlm: bool):
        self.split, self.transform, self.context_length, self.mlm = split, transform, context_length, mlm
        self.pairs = [(i, j) for i, s in enumerate(split.samples) for j in range(len(s.captions))]
        self.labels, self.num_ids = relabel([s.pid for s in split.samples])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, k: int) -> dict[str, Any]:
        i, j = self.pairs[k]
        s = self.split.samples[i]
        tokens = tokenize(s.captions[j], self.context_length)
        item = {"index": k, "image": _image(s.image, self.transform), "tokens": tokens, "pid": self.labels[i]}
        if self.mlm:  # the engine seeds torch's RNG per item, so masks repeat on resume
            item["mlm_tokens"], item["mlm_labels"] = mask_tokens(tokens, None)
        return item


class T2IEvalDataset(Dataset):
    """Images first (``index < num_images``), then every caption: ``{index, image}`` / ``{index, tokens}``."""

    def __init__(self, split: DatasetSplit, transform, context_length: int):
        self.split, self.transform, self.context_length = split, transform, context_length
        self.num_images = len(split.samples)
        self.captions = [c for s in split.samples for c in s.captions]

    def __len__(self) -> int:
        return self.num_images + len(self.captions)

    def __getitem__(self, k: int) -> dict[str, Any]:
        if k < self.num_images:
            return {"index": k, "image": _image(self.split.samples[k].image, self.transform)}
        return {"index": k, "tokens": tokenize(self.captions[k - self.num_images], self.context_length)}


def limit_eval_split(split: DatasetSplit, limit: int) -> DatasetSplit:
    """The first ``limit`` images plus every other image of their identities (all captions kept)."""
    pids = {s.pid for s in split.samples[:limit]}
    samples = [s for k, s in enumerate(split.samples) if k < limit or s.pid in pids]
    return DatasetSplit(split.name, split.split, split.family, samples, split.meta, split.files, dict(split.extra))


# --------------------------------------------------------------------------- model
class T2IModel(nn.Module):
    """Image encoder (the backbone + projection), CLIP text encoder, ID classifier, optional MLM branch."""

    def __init__(self, backbone: Backbone, text: TextEncoder, num_ids: int, temperature: float = 0.02,
                 mlm: bool = False, cmt_depth: int = 4, feature_norm: str = "none"):
        super().__init__()
        dim = text.embed_dim
        self.backbone, self.text = backbone, text
        self.image_proj = nn.Linear(backbone.embed_dim, dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=backbone.embed_dim ** -0.5)  # CLIP's visual.proj scale
        self.classifier = nn.Linear(dim, num_ids)
        nn.init.normal_(self.classifier.weight, std=0.001)  # as IRRA initialises it
        nn.init.zeros_(self.classifier.bias)
        self.logit_scale = 1.0 / temperature  # IRRA keeps the temperature fixed
        # "batchnorm": one BatchNorm1d per modality on the shared-space features. Not IRRA (whose
        # CLIP-initialised towers start discriminative): two random towers start with every input
        # at nearly the same direction (cosine ~0.99), and centring lets SDM/ID learn from scratch
        if feature_norm not in ("none", "batchnorm"):
            raise ValueError(f"feature_norm must be 'none' or 'batchnorm', got {feature_norm!r}")
        self.image_norm: nn.Module = nn.BatchNorm1d(dim) if feature_norm == "batchnorm" else nn.Identity()
        self.text_norm: nn.Module = nn.BatchNorm1d(dim) if feature_norm == "batchnorm" else nn.Identity()
        self.mlm = mlm
        if mlm:
            heads = max(dim // 64, 1)
            self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
            self.cross_modal_transformer = Transformer(dim, cmt_depth, heads)
            self.cross_modal_transformer.init_weights()
            self.ln_pre_t, self.ln_pre_i, self.ln_post = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
            scale = dim ** -0.5
            nn.init.normal_(self.cross_attn.in_proj_weight, std=scale)
            nn.init.normal_(self.cross_attn.out_proj.weight, std=scale * (2 * cmt_depth) ** -0.5)
            self.mlm_head = nn.Sequential(OrderedDict([
                ("dense", nn.Linear(dim, dim)), ("gelu", QuickGELU()), ("ln", nn.LayerNorm(dim)),
                ("fc", nn.Linear(dim, VOCAB_SIZE))]))
            nn.init.normal_(self.mlm_head.dense.weight, std=(2 * dim) ** -0.5)
            nn.init.normal_(self.mlm_head.fc.weight, std=scale * (2 * cmt_depth) ** -0.5)

    def encode_image(self, images: torch.Tensor, tokens: bool = False):
        f = self.backbone(images)
        g = self.image_norm(self.image_proj(f.embedding))
        if not tokens:
            return g
        return g, torch.cat([g.unsqueeze(1), self.image_proj(f.tokens())], 1)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, eot = self.text(ids)
        return tokens, self.text_norm(eot)

    def mlm_logits(self, mlm_ids: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        t, _ = self.text(mlm_ids)
        k = self.ln_pre_i(image_tokens)
        x = self.cross_attn(self.ln_pre_t(t), k, k, need_weights=False)[0]
        x = self.ln_post(self.cross_modal_transformer(x))
        return self.mlm_head(x)


def sdm_loss(image_feats: torch.Tensor, text_feats: torch.Tensor, pids: torch.Tensor, logit_scale: float,
             eps: float = 1e-8) -> torch.Tensor:
    """Similarity distribution matching (IRRA ``compute_sdm``), both directions summed."""
    labels = (pids.view(-1, 1) == pids.view(1, -1)).float()
    q = labels / labels.sum(1, keepdim=True)
    i = F.normalize(image_feats.float(), dim=1)
    t = F.normalize(text_feats.float(), dim=1)
    t2i = logit_scale * (t @ i.T)
    loss = 0.0
    for logits in (t2i, t2i.T):
        p = F.softmax(logits, 1)
        loss = loss + (p * (F.log_softmax(logits, 1) - torch.log(q + eps))).sum(1).mean()
    return loss  # type: ignore[return-value]


# --------------------------------------------------------------------------- adapter
def build_text_encoder(card: TaskCard) -> tuple[TextEncoder, Any]:
    o = _opts(card)
    t = o.text
    enc = TextEncoder(embed_dim=o.embed_dim, context_length=t.context_length, width=t.width, layers=t.layers,
                      heads=t.heads)
    report = None
    if t.checkpoint:
        path = t.checkpoint.removeprefix("file:")
        report = load_clip_text(enc, Path(path).expanduser())
        log.info("card %s: %s", card.name, report.summary())
    return enc, report


class T2IAdapter:
    family = "t2i"
    predictions_suffix = ".npz"

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]:
        which = split_name(card, role)
        o = _opts(card)
        size = (card.input.height, card.input.width)
        if role == "train":
            split = read_split(card.dataset.name, which, root, limit=limit)
            if not split.samples:
                raise ValueError(f"{card.dataset.name}/{which}: no training images")
            ds = T2ITrainDataset(split, None, o.text.context_length, o.mlm)
            if o.num_ids is None or ds.num_ids > o.num_ids:
                raise ConfigError(f"{card.dataset.name}/{which} has {ds.num_ids} training identities but card "
                                 f"{card.name} declares adapter.num_ids={o.num_ids}")
            a = _opts(card, "augment")
            ds.transform = image_transform(size, True, a.flip, a.pad, a.random_erasing)
            return ds, split
        split = read_split(card.dataset.name, which, root)
        if limit is not None:
            split = limit_eval_split(split, limit)
        return T2IEvalDataset(split, image_transform(size, False), o.text.context_length), split

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        imgs = [it for it in items if "image" in it]
        txts = [it for it in items if "tokens" in it]
        out: dict[str, Any] = {
            "index": torch.tensor([it["index"] for it in items], dtype=torch.long),
            "images": torch.stack([it["image"] for it in imgs]) if imgs else None,
            "image_index": torch.tensor([it["index"] for it in imgs], dtype=torch.long),
            "tokens": torch.stack([it["tokens"] for it in txts]) if txts else None,
            "text_index": torch.tensor([it["index"] for it in txts], dtype=torch.long),
        }
        if items and "pid" in items[0]:
            out["pids"] = torch.tensor([it["pid"] for it in items], dtype=torch.long)
        if items and "mlm_tokens" in items[0]:
            out["mlm_tokens"] = torch.stack([it["mlm_tokens"] for it in items])
            out["mlm_labels"] = torch.stack([it["mlm_labels"] for it in items])
        return out

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None:
        return None  # IRRA's "random" sampler: a fresh permutation of all pairs per epoch

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module:
        o = _opts(card)
        if o.num_ids is None:
            raise ConfigError(f"card {card.name}: adapter.num_ids (the number of training identities) is required "
                             "for the ID loss")
        text, report = build_text_encoder(card)
        model = T2IModel(backbone, text, o.num_ids, o.temperature, o.mlm, o.cmt_depth, o.feature_norm)
        model.text_load_report = report
        model.loss_cfg = {"id": o.id_loss_weight, "sdm": o.sdm_loss_weight, "mlm": o.mlm_loss_weight}
        return model

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
        m = getattr(model, "module", model)  # the model may arrive wrapped in DDP
        cfg = m.loss_cfg
        pids = batch["pids"]
        if m.mlm:
            img, img_tokens = m.encode_image(batch["images"], tokens=True)
        else:
            img = m.encode_image(batch["images"])
        _, txt = m.encode_text(batch["tokens"])
        sdm = sdm_loss(img, txt, pids, m.logit_scale)
        id_loss = (F.cross_entropy(m.classifier(img.float()), pids)
                   + F.cross_entropy(m.classifier(txt.float()), pids)) / 2
        total = cfg["sdm"] * sdm + cfg["id"] * id_loss
        out = {"sdm": sdm.detach(), "id": id_loss.detach()}
        if m.mlm:
            logits = m.mlm_logits(batch["mlm_tokens"], img_tokens)
            mlm = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch["mlm_labels"].reshape(-1),
                                  ignore_index=0)
            total = total + cfg["mlm"] * mlm
            out["mlm"] = mlm.detach()
        out["loss"] = total
        return out

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]:
        m = getattr(model, "module", model)
        out: list[dict[str, Any]] = []
        if batch["images"] is not None:
            f = F.normalize(m.encode_image(batch["images"]).float(), dim=1).cpu()
            out += [{"index": int(i), "feat": v} for i, v in zip(batch["image_index"].tolist(), f, strict=True)]
        if batch["tokens"] is not None:
            f = F.normalize(m.encode_text(batch["tokens"])[1].float(), dim=1).cpu()
            out += [{"index": int(i), "feat": v} for i, v in zip(batch["text_index"].tolist(), f, strict=True)]
        return out

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path:
        from hcbench.families.t2i_eval import T2IEvaluator

        return T2IEvaluator().write(predictions, split, card, path)

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        from hcbench.families.t2i_eval import T2IEvaluator

        return T2IEvaluator().score(path, split, card)
