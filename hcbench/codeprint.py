"""The code fingerprint of a result record: which source produced its numbers.

A record's identity (checkpoint, card sha256, tier, seed) and its dataset fingerprint say what
was run on what; they do not say *with which code*. Two checkouts with the same identity can
disagree when an adapter, an evaluator, the training loop or a backbone changed in between, so
each record also stores ``run.code``: the sha256 of the source of every module that computes a
number of that run, found as the static import closure of

* the training/evaluation driver (:mod:`hcbench.engine.runner`),
* the card's family's adapter and evaluator (a plug-in family's own package is followed the same
  way),
* the dataset reader registered for the card's dataset format, and
* every module of :mod:`hcbench.backbones` (backbones are built through a registry, so their
  builders are not reached by imports).

Each module counts by its syntax tree with docstrings removed, so comments, docstrings and
formatting never make a record stale; any change to code does. Modules that cannot change a
number are not followed: presentation and storage (``results``, ``cli``, progress, listing,
``io``, ``errors``), the registry's lookup machinery, and :mod:`hcbench.synth` (what it writes is
covered by the dataset fingerprint). A record whose ``run.code`` differs from the current code's
is stale: ``hcbench run`` re-runs it, the leaderboard counts it in a footnote, and the tests of
the committed records fail until they are re-made.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # .../hcbench

# never followed: they store, print or look up, or (synth) are covered by the dataset fingerprint
EXCLUDED = ("hcbench", "hcbench.cli", "hcbench.listing", "hcbench.registry", "hcbench.io", "hcbench.errors",
            "hcbench.results", "hcbench.synth", "hcbench.engine.progress", "hcbench.engine.clean",
            "hcbench.engine.executors", "hcbench.codeprint", "hcbench.backbones.inspect",
            "hcbench.backbones.validate")


def _excluded(name: str) -> bool:
    return any(name == e or (e != "hcbench" and name.startswith(e + ".")) for e in EXCLUDED)


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` (a package's ``__init__.py``), or None if not Python source."""
    if name == "hcbench" or name.startswith("hcbench."):
        base = PACKAGE_DIR.joinpath(*name.split(".")[1:])
        for p in (base.with_suffix(".py"), base / "__init__.py"):
            if p.is_file():
                return p
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None) if spec else None
    return Path(origin) if origin and origin.endswith(".py") else None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, name: str, is_package: bool, packages: set[str]) -> set[str]:
    """Names of the modules of ``packages`` that ``tree`` imports (at any depth, lazy imports
    included; ``if TYPE_CHECKING`` blocks skipped). ``from a import b`` yields ``a.b`` when that
    is a module, else ``a``."""
    out: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] in packages)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")
                parts = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base.split(".")[0] not in packages:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if _module_file(sub) is not None else base)
    return out


@functools.cache
def _parse(path: Path) -> tuple[str, ast.Module]:
    text = path.read_text(encoding="utf-8")
    digest = hashlib.sha256(ast.unparse(_strip_docstrings(ast.parse(text))).encode()).hexdigest()
    return digest, ast.parse(text, filename=str(path))


def module_hashes(roots: list[str]) -> dict[str, str]:
    """``{module: sha256 of its docstring-free syntax}`` over the import closure of ``roots``,
    following only modules of the roots' top-level packages and never :data:`EXCLUDED` ones."""
    packages = {r.split(".")[0] for r in roots}
    seen: dict[str, str] = {}
    todo = [r for r in roots if not _excluded(r)]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:
            continue
        digest, tree = _parse(path)
        seen[name] = digest
        for dep in _imports(tree, name, path.name == "__init__.py", packages):
            if not _excluded(dep) and dep not in seen:
                todo.append(dep)
    return dict(sorted(seen.items()))


def _module_of(ref) -> str | None:
    if isinstance(ref, str):
        return ref.partition(":")[0]
    return getattr(ref, "__module__", None)


def code_roots(family: str, dataset_format: str | None = None) -> list[str]:
    """The modules whose import closure is the code of a run of ``family`` on ``dataset_format``."""
    from hcbench.registry import DATASETS, FAMILIES

    fam = FAMILIES.get(family)
    roots = ["hcbench.engine.runner", _module_of(fam.adapter), _module_of(fam.evaluator)]
    if dataset_format is not None:
        roots.append(_module_of(DATASETS.get(dataset_format)))
    roots += sorted(f"hcbench.backbones.{p.stem}" for p in (PACKAGE_DIR / "backbones").glob("*.py")
                    if p.stem != "__init__")
    return [r for r in dict.fromkeys(roots) if r]


def code_modules(family: str, dataset_format: str | None = None) -> dict[str, str]:
    """Per-module hashes of the code of a run (stored in the run's ``config.json``)."""
    return module_hashes(code_roots(family, dataset_format))


def fingerprint_of(modules: dict[str, str]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(modules, sort_keys=True).encode()).hexdigest()


def code_fingerprint(family: str, dataset_format: str | None = None) -> str:
    """``sha256:…`` of the code of a run of ``family`` on ``dataset_format`` (a record's ``run.code``)."""
    return fingerprint_of(code_modules(family, dataset_format))


@functools.cache
def card_code(card_name: str) -> str | None:
    """The current code fingerprint of runs of the card ``card_name``; None when this hcbench does
    not know the card, its dataset or its family (a record of it cannot be checked)."""
    from hcbench.cards import get_card
    from hcbench.data.cards import get_dataset_card
    from hcbench.errors import UserError

    try:
        card = get_card(card_name)
        return code_fingerprint(card.family, get_dataset_card(card.dataset.name).format)
    except (UserError, KeyError, ValueError, OSError):
        return None


def changed_modules(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Modules added, removed or edited between two :func:`code_modules` maps, for messages."""
    return sorted(m for m in set(old) | set(new) if old.get(m) != new.get(m))


__all__ = ["card_code", "changed_modules", "code_fingerprint", "code_modules", "code_roots", "fingerprint_of", "module_hashes"]
