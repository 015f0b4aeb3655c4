"""Typed, lazy registries for backbones, task adapters, dataset readers, pretrainers and task families.

Registration is metadata: a built-in entry is registered by decorator when its (light)
module is imported, and third-party entries are discovered through entry-point groups the
first time a registry is listed or queried. Heavy imports (torch, timm) happen inside the
registered builders, never at registration. A plugin that fails to load is reported with a
warning naming it and recorded in ``Registry.errors``; the other entries still load.

Third-party packages declare, e.g. in their ``pyproject.toml``::

    [project.entry-points."hcbench.backbones"]
    my_vit = "my_pkg.hcbench_plugin"          # a module that registers entries on import
    my_vit2 = "my_pkg.models:build_my_vit"    # or a builder, registered under the EP name

    [project.entry-points."hcbench.families"]
    toy = "my_pkg.toy_family:FAMILY"          # a Family object (see hcbench.families.base)

or a user passes ``--include path/to/my_backbone.py`` on the command line.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

from hcbench.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0]) if self.args else ""


class PluginWarning(UserWarning):
    pass


@dataclass
class Entry(Generic[T]):
    name: str
    obj: T
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"  # "builtin", "entry-point:<dist>", or "include:<path>"


class Registry(Generic[T]):
    """Name -> object with metadata, wildcard listing, duplicate rejection and suggestions."""

    def __init__(self, kind: str, group: str, builtin_modules: tuple[str, ...] = (), *, objects: bool = False):
        self.kind = kind
        self._objects = objects  # entry points may name plain objects (e.g. a Family), not only callables
        self.group = group
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry[T]] = {}
        self._loaded = False
        self._loading = False
        self._source = "builtin"
        self.errors: dict[str, str] = {}

    # -- registration -----------------------------------------------------------------
    def register(self, name: str | None = None, **meta: Any) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name or obj.__name__, obj, **meta)
            return obj

        return deco

    def add(self, name: str, obj: T, **meta: Any) -> None:
        if name in self._entries and self._entries[name].obj is not obj:
            prev = self._entries[name]
            raise ValueError(f"{self.kind} {name!r} is already registered (by {prev.source}); pick another name")
        self._entries[name] = Entry(name, obj, meta, self._source)

    # -- discovery --------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for mod in self._builtin_modules:
                importlib.import_module(mod)
            for ep in entry_points(group=self.group):
                self._load_entry_point(ep)
        finally:
            self._loading = False
            self._loaded = True

    def _load_entry_point(self, ep) -> None:
        dist = getattr(getattr(ep, "dist", None), "name", None) or "?"
        label = f"{ep.name} ({ep.value}, from {dist})"
        self._source = f"entry-point:{dist}"
        try:
            obj = ep.load()
            plain = callable(obj) or self._objects  # a module registers its entries on import
            if plain and not isinstance(obj, type(sys)) and ep.name not in self._entries:
                self.add(ep.name, obj)
        except Exception as e:  # a broken plugin must not break the others
            msg = f"{type(e).__name__}: {e}"
            self.errors[ep.name] = msg
            warnings.warn(f"hcbench: {self.kind} plugin {label} failed to load: {msg}", PluginWarning, stacklevel=2)
        finally:
            self._source = "builtin"

    # -- queries ----------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        self._ensure_loaded()
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def names(self, pattern: str = "*") -> list[str]:
        self._ensure_loaded()
        return sorted(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def entry(self, name: str) -> Entry[T]:
        self._ensure_loaded()
        if name not in self._entries:
            close = difflib.get_close_matches(name, list(self._entries), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(self._entries))}"
            if name in self.errors:
                hint = f"; its plugin failed to load: {self.errors[name]}"
            raise RegistryError(f"unknown {self.kind} {name!r}{hint}")
        return self._entries[name]

    def get(self, name: str) -> T:
        return self.entry(name).obj


def load_ref(ref: Any) -> Any:
    """``"pkg.module:attr"`` -> the attribute (imported now); anything else is returned as is.

    Lives here, below every layer, so that lower packages (``synth``, ``data``) can call a
    family's hooks through the registry without importing ``hcbench.families``."""
    if not isinstance(ref, str):
        return ref
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ValueError(f"expected a 'module:attribute' reference, got {ref!r}")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


_INCLUDED: list[str] = []


def included() -> tuple[str, ...]:
    """The ``--include`` files imported so far, in order: a process an executor starts (a pool
    run, a Slurm job) imports them again, since it knows only the built-in plugins."""
    return tuple(_INCLUDED)


def include(path: str | Path) -> None:
    """Import a user's Python file (``--include``) so that its registrations take effect; a file
    already included is not imported twice."""
    path = Path(path).resolve()
    if not path.exists():
        raise FileNotFoundError(f"--include {path}: no such file")
    if str(path) in _INCLUDED:
        return
    mod_name = f"hcbench_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"--include {path}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    for reg in ALL:
        reg._ensure_loaded()  # built-ins first, so a user's duplicate name is reported, not shadowed
        reg._source = f"include:{path}"
    try:
        spec.loader.exec_module(module)
    finally:
        for reg in ALL:
            reg._source = "builtin"
    _INCLUDED.append(str(path))


BACKBONES: Registry[Callable[..., Any]] = Registry("backbone", "hcbench.backbones", ("hcbench.backbones.zoo",))
ADAPTERS: Registry[Any] = Registry("adapter", "hcbench.adapters", ("hcbench.adapters",))
DATASETS: Registry[Callable[..., Any]] = Registry("dataset reader", "hcbench.datasets", ("hcbench.data.readers",))
PRETRAINERS: Registry[Any] = Registry("pretraining method", "hcbench.pretrainers", ("hcbench.pretrain",))
# task families (hcbench.families.base.Family); built-in ones import no torch
FAMILIES: Registry[Any] = Registry("task family", "hcbench.families", ("hcbench.families",), objects=True)
ALL = (BACKBONES, ADAPTERS, DATASETS, PRETRAINERS, FAMILIES)
