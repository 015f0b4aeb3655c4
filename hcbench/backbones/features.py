"""The one backbone contract: every backbone maps an image batch to :class:`Features`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Features:
    """What a backbone returns.

    ``embedding``: global embedding ``B x C`` (CLS token, or pooled map for CNNs).
    ``dense``: dense map ``B x C x H/stride x W/stride`` (patch tokens for ViTs).
    ``prefix``: optional extra tokens (CLS/registers) ``B x P x C`` for pretraining methods.
    """

    embedding: torch.Tensor
    dense: torch.Tensor
    stride: int
    prefix: torch.Tensor | None = None

    @property
    def embed_dim(self) -> int:
        return int(self.dense.shape[1])

    def tokens(self) -> torch.Tensor:
        """Patch tokens as ``B x N x C`` (row-major over the dense grid)."""
        return self.dense.flatten(2).transpose(1, 2)


@dataclass(frozen=True)
class FeatureSpec:
    """Static description adapters build their heads from (cf. detectron2 ``output_shape``)."""

    embed_dim: int
    stride: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Base class of every registered backbone.

    Subclasses set ``embed_dim``/``stride``, implement ``forward(x) -> Features`` and
    ``layer_id(param_name) -> int`` (0 = embeddings ... ``num_layers + 1`` = last) for
    layer-wise learning-rate decay.
    """

    embed_dim: int
    stride: int
    num_layers: int = 1
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    spec: str = ""
    checkpoint_sha256: str | None = None

    def forward(self, x: torch.Tensor) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer_id(self, name: str) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(self.embed_dim, self.stride, tuple(self.mean), tuple(self.std))
