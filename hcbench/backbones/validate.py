"""Check a backbone spec before anything runs: a typo is one error, not one failure per card.

:func:`check_backbone_spec` does the cheap part of :func:`hcbench.backbones.build_backbone`
without building a model: the registry name exists, the ``timm:`` model exists (with close
names suggested), the ``file:`` checkpoint exists and has a card naming its architecture, the
``student:`` folder holds an exported backbone. Loading the weights is left to the run.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from hcbench.backbones import BackboneSpecError, _card, students_dir
from hcbench.registry import BACKBONES, RegistryError


def _normal(name: str) -> str:
    # "resnet_18", "ResNet-18" and "resnet18" are one name to a reader
    return name.lower().replace("-", "").replace("_", "").replace(".", "")


def suggest_timm(name: str, n: int = 3) -> list[str]:
    """timm model names close to ``name``, closest first; ``_``/``-``/case differences count as none."""
    import timm

    names = timm.list_models()
    by_norm: dict[str, list[str]] = {}
    for m in names:
        by_norm.setdefault(_normal(m), []).append(m)
    want = _normal(name)
    out = list(by_norm.get(want, []))
    for close in difflib.get_close_matches(want, list(by_norm), n=n + len(out), cutoff=0.75):
        out += [m for m in by_norm[close] if m not in out]
    if len(out) < n:  # then the plain spelling (keeps prefixes such as "vit_" meaningful)
        out += [m for m in difflib.get_close_matches(name, names, n=n) if m not in out]
    return out[:n]


def check_backbone_spec(spec: str) -> None:
    """Raise :class:`BackboneSpecError` (or a checkpoint error) naming what is wrong with ``spec``;
    for a ``file:`` or ``student:`` checkpoint that includes the architecture its card names."""
    kind, sep, rest = spec.partition(":")
    if sep and kind == "timm":
        problem = _timm_problem(rest)
        if problem:
            raise BackboneSpecError(f"backbone {spec}: {problem}")
    elif sep and kind == "file":
        path = Path(rest).expanduser()
        _check_architecture(spec, path, _card(path))  # missing file, a folder, no card: each its own message
    elif sep and kind == "student":
        path = students_dir() / rest / "backbone.safetensors"
        if not path.exists():
            known = sorted(p.name for p in students_dir().glob("*")) if students_dir().exists() else []
            close = difflib.get_close_matches(rest, known, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else f"known students: {', '.join(known) or 'none'}"
            raise BackboneSpecError(f"backbone {spec}: student {rest!r} not found at {path}; {hint}")
        _check_architecture(spec, path, _card(path))
    else:
        BACKBONES.entry(spec)  # RegistryError naming the close registered names


def _timm_problem(name: str) -> str | None:
    """What is wrong with timm model ``name`` (close names suggested), or None if timm has it."""
    import timm

    if name and timm.is_model(name):
        return None
    close = suggest_timm(name) if name else []
    hint = f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else \
        "; `hcbench list backbones` or timm.list_models() show the names"
    return f"timm has no model {name!r}{hint}"


def check_architecture(arch: str) -> None:
    """Raise :class:`BackboneSpecError` unless ``arch`` -- what a backbone card names -- exists: a
    registered alias or release, or a timm model (close names suggested as on the command line)."""
    if arch.startswith(("file:", "student:")):
        raise BackboneSpecError(f"architecture {arch!r}: a card names an alias, a release or timm:<name>")
    if arch.startswith("timm:"):
        problem = _timm_problem(arch.removeprefix("timm:"))
    else:
        try:
            BACKBONES.entry(arch)
            problem = None
        except RegistryError as e:
            problem = str(e)
    if problem:
        raise BackboneSpecError(f"architecture {arch!r} does not exist: {problem}")


def _check_architecture(spec: str, path: Path, card) -> None:
    try:
        check_architecture(card.architecture)
    except BackboneSpecError as e:
        raise BackboneSpecError(f"backbone {spec}, card of {path}: {e}") from None


__all__ = ["check_architecture", "check_backbone_spec", "suggest_timm"]
