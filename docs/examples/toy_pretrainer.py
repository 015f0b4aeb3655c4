"""A pretraining method from outside hcbench: ``toy-local-global``, predict the person view's
embedding from a local crop's (stop-gradient on the target). Registered like DPAL and SAIP:

    hcbench --include docs/examples/toy_pretrainer.py pretrain toy-local-global \\
        --student vit_tiny --images crops/ --name toy_student --size small

tests/families/test_plugin_pretrainer.py runs exactly this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hcbench.pretrain.base import MethodOptions, PretrainMethod
from hcbench.pretrain.tokens import encode
from hcbench.registry import PRETRAINERS


@dataclass
class LocalGlobalOptions(MethodOptions):
    weight: float = 1.0


class LocalGlobal(PretrainMethod):
    """``forward(batch, progress)`` returns named losses with the total under ``"loss"``; the
    runner optimises everything registered on the module and exports ``student``."""

    name = "toy-local-global"
    Options = LocalGlobalOptions

    def __init__(self, student, teacher=None, options=None):
        super().__init__(student, teacher, options)
        self.predictor = nn.Linear(student.embed_dim, student.embed_dim)

    def forward(self, batch, progress: float = 0.0) -> dict[str, torch.Tensor]:
        target, _, _ = encode(self.student, batch.global_view(0))
        local, _, _ = encode(self.student, batch.local_view(0))
        loss = self.options.weight * F.mse_loss(self.predictor(local), target.detach())
        return {"loss": loss}


PRETRAINERS.add("toy-local-global", LocalGlobal, description="toy: local crop predicts the person view",
                teacher="none")
