"""Task families, one registered :class:`~hcbench.families.base.Family` each (``hcbench.registry.FAMILIES``).

Importing this package registers the built-in families; it imports pydantic and numpy,
never torch (the adapters and evaluators are lazy ``"module:attr"`` references).
"""

from hcbench.families import attributes, detection, fashion, parsing, pose, reid, t2i  # noqa: F401
from hcbench.families.base import (  # noqa: F401
    Evaluator,
    Family,
    FamilyError,
    MetricKey,
    NoOptions,
    OptionsModel,
    ScoreArg,
    SynthDataset,
    families,
    family_names,
    get_family,
)
