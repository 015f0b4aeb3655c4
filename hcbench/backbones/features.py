"""The one backbone contract: every backbone maps an image batch to :class:`Features`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hcbench.normalization import IMAGENET_MEAN, IMAGENET_STD


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
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class Backbone(nn.Module):
    """Base class of every registered backbone.

    Input normalisation is defined here, once: ``forward`` takes ``[0, 1]`` RGB images and
    subtracts/divides by the backbone's own ``pixel_mean``/``pixel_std`` buffers (the statistics
    its weights were trained with; detectron2 style) before :meth:`forward_features`. Data
    transforms and adapters therefore never hold mean/std constants. The buffers are not
    persistent, so state dicts (checkpoints, exports) are unchanged by them.

    Subclasses call ``super().__init__()``, set ``embed_dim``/``stride``, implement
    ``forward_features(x) -> Features`` (``x`` already normalised) and ``layer_id(param_name) -> int``
    (0 = embeddings ... ``num_layers + 1`` = last) for layer-wise learning-rate decay. A plugin
    subclass that overrides ``forward`` instead must normalise with :meth:`normalize` itself.
    """

    embed_dim: int
    stride: int
    num_layers: int = 1
    spec: str = ""
    checkpoint_sha256: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self._stats = (IMAGENET_MEAN, IMAGENET_STD)
        self.load_report = None

    def set_normalization(self, mean: tuple[float, ...] | list[float], std: tuple[float, ...] | list[float]) -> None:
        """Set the input statistics (``[0, 1]`` units, RGB)."""
        if len(mean) != 3 or len(std) != 3 or any(float(s) <= 0 for s in std):
            raise ValueError(f"mean/std must be 3 numbers each (std > 0), got mean={list(mean)} std={list(std)}")
        self._stats = (tuple(float(m) for m in mean), tuple(float(s) for s in std))
        with torch.no_grad():
            self.pixel_mean.copy_(torch.tensor(self._stats[0]).view(1, 3, 1, 1))
            self.pixel_std.copy_(torch.tensor(self._stats[1]).view(1, 3, 1, 1))

    @property
    def mean(self) -> tuple[float, float, float]:
        return self._stats[0]  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        return self._stats[1]  # type: ignore[return-value]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> this backbone's input statistics."""
        return (x - self.pixel_mean.to(x.dtype)) / self.pixel_std.to(x.dtype)

    def forward(self, x: torch.Tensor) -> Features:
        return self.forward_features(self.normalize(x))

    def forward_features(self, x: torch.Tensor) -> Features:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer_id(self, name: str) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec(self.embed_dim, self.stride, self.mean, self.std)
