"""In-harness pretraining: DPAL, SAIP and two baselines, each producing a ``student:<name>``.

Registration is metadata only: :class:`PretrainerInfo` names the module and class, which are
imported when a run starts (``hcbench pretrain METHOD``), so ``import hcbench`` stays light.
Third-party methods register a :class:`PretrainerInfo` (or a class) in ``PRETRAINERS``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from hcbench.registry import PRETRAINERS


@dataclass(frozen=True)
class PretrainerInfo:
    """Where a pretraining method lives and what it needs.

    ``teacher``: ``"required"`` (DPAL, feature-kd), ``"none"`` (SAIP, random).
    """

    name: str
    module: str
    cls: str
    teacher: str
    description: str

    def load(self) -> type:
        return getattr(importlib.import_module(self.module), self.cls)


_BUILTIN = (
    PretrainerInfo("dpal", "hcbench.pretrain.dpal", "DPAL", "required",
                   "DPAL: distil a frozen teacher through the D-PaDe pattern decoder (global/local/relation)"),
    PretrainerInfo("saip", "hcbench.pretrain.saip", "SAIP", "none",
                   "SAIP: EMA self-distillation with cross-scale matching, reconstruction and search"),
    PretrainerInfo("feature-kd", "hcbench.pretrain.baselines", "FeatureKD", "required",
                   "Proteus-style feature distillation: CLS + patch tokens through linear projectors, MSE"),
    PretrainerInfo("random", "hcbench.pretrain.baselines", "RandomInit", "none",
                   "no pretraining: exports the randomly initialised student"),
)

for _info in _BUILTIN:
    PRETRAINERS.add(_info.name, _info, description=_info.description, teacher=_info.teacher)


def get_method(name: str) -> type:
    """The method class registered as ``name`` (a :class:`PretrainerInfo` is imported now)."""
    obj = PRETRAINERS.get(name)
    return obj.load() if isinstance(obj, PretrainerInfo) else obj


__all__ = ["PretrainerInfo", "get_method"]
