"""The shared simple feature pyramid (ViTDet style) built from one backbone map.

Dense-prediction adapters (parsing, detection) that need several scales get them here,
never from per-adapter copies: from the last map of stride ``s`` it makes maps of stride
``s/4, s/2, s, 2s`` (2x2 deconvolutions up, identity, 2x2 max-pool down), each followed by
a 1x1 and a 3x3 convolution with channel LayerNorm.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _resample(dim: int, scale: float) -> nn.Module:
    if scale == 4.0:
        return nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 2, 2, stride=2), LayerNorm2d(dim // 2), nn.GELU(),
            nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
        )
    if scale == 2.0:
        return nn.ConvTranspose2d(dim, dim // 2, 2, stride=2)
    if scale == 1.0:
        return nn.Identity()
    if scale == 0.5:
        return nn.MaxPool2d(2, 2)
    raise ValueError(f"unsupported pyramid scale {scale}; use 4, 2, 1 or 0.5")


class SimpleFeaturePyramid(nn.Module):
    """``forward(dense) -> OrderedDict[str, Tensor]`` with keys ``"0".."3"`` (fine to coarse).

    ``out_channels`` and ``strides`` are attributes, as torchvision's detection models expect.
    """

    def __init__(self, in_channels: int, in_stride: int, out_channels: int = 128,
                 scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)):
        super().__init__()
        self.out_channels = out_channels
        self.strides = [int(in_stride / s) for s in scales]
        self.stages = nn.ModuleList()
        for s in scales:
            ch = {4.0: in_channels // 4, 2.0: in_channels // 2}.get(s, in_channels)
            self.stages.append(nn.Sequential(
                _resample(in_channels, s),
                nn.Conv2d(ch, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels),
            ))

    def forward(self, dense: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict((str(i), stage(dense)) for i, stage in enumerate(self.stages))
