"""Pure metric functions (numpy/torch), one module per task family; no training code.

``pose`` (OKS AP, PCKh), ``parsing`` (confusion-matrix mIoU), ``detection`` (CrowdHuman AP/MR-2/JI,
CityPersons MR-2), ``reid`` (CMC/mAP/mINP), ``attributes`` (mA, instance metrics). The names below
are importable from ``hcbench.metrics`` directly; modules load on first use so that importing the
package stays cheap (``reid`` pulls in torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SIGMAS": "pose", "keypoint_ap": "pose", "pckh": "pose", "evaluate_oks": "oks",
    "ConfusionMatrix": "parsing", "parsing_metrics": "parsing",
    "crowdhuman_eval": "detection", "citypersons_mr": "detection",
    "evaluate_reid": "reid",
    "attribute_metrics": "attributes",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"hcbench.metrics.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hcbench.metrics' has no attribute {name!r}")
