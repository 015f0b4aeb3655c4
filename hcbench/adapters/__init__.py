"""Task adapters, one module per family, registered in ``hcbench.registry.ADAPTERS`` by family."""

from hcbench.adapters import attributes, detection, parsing, pose, reid  # noqa: F401
from hcbench.adapters.base import TaskAdapter, get_adapter  # noqa: F401
