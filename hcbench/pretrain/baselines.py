"""Baselines pretrained in the same harness as DPAL and SAIP.

* ``feature-kd`` (Proteus-style): the student's CLS and patch tokens of the person view go
  through linear projectors (student dim -> teacher dim) and match the frozen teacher's by
  MSE (patch tokens resampled to the teacher's grid when the grids differ).
* ``random``: no training at all; the randomly initialised student is exported, so the
  recipe's random baseline is a ``student:<name>`` like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hcbench.backbones.features import Backbone
from hcbench.pretrain.base import MethodOptions, PretrainMethod
from hcbench.pretrain.tokens import encode, resize_tokens
from hcbench.pretrain.views import MultiViewBatch


@dataclass
class FeatureKDOptions(MethodOptions):
    cls_weight: float = 1.0
    patch_weight: float = 1.0


class FeatureKD(PretrainMethod):
    name = "feature-kd"
    needs_teacher = True
    Options = FeatureKDOptions

    def __init__(self, student: Backbone, teacher: Backbone | None = None,
                 options: FeatureKDOptions | None = None):
        super().__init__(student, teacher, options)
        self.cls_proj = nn.Linear(student.embed_dim, teacher.embed_dim)
        self.patch_proj = nn.Linear(student.embed_dim, teacher.embed_dim)

    def forward(self, batch: MultiViewBatch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        person = batch.global_view(0)
        with torch.no_grad():
            t_cls, t_tok, t_grid = encode(self.teacher, person)
        s_cls, s_tok, s_grid = encode(self.student, person)
        cls = F.mse_loss(self.cls_proj(s_cls), t_cls)
        patch = F.mse_loss(resize_tokens(self.patch_proj(s_tok), s_grid, t_grid), t_tok)
        o = self.options
        loss = o.cls_weight * cls + o.patch_weight * patch
        return {"loss": loss, "cls": cls.detach(), "patch": patch.detach()}


class RandomInit(PretrainMethod):
    """Trains nothing: the runner exports the student as initialised from ``--seed``."""

    name = "random"
    trains = False
