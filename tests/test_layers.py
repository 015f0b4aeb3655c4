"""The layers DESIGN.md draws, checked on the source (AST, no imports run):

- no import cycle between hcbench modules, nor between its top-level packages;
- ``hcbench/results/`` never imports ``hcbench.engine``; ``data/`` and ``metrics/`` import no
  layer above them; ``hcbench.io`` and ``hcbench.errors`` import nothing from hcbench;
- outside ``hcbench/cli/`` no library code uses argparse, reads a ``Namespace``, calls ``print`` or
  reads a quiet switch from the environment (the CLI prints and passes ``quiet`` down).

Every import counts, also one inside a function: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hcbench"


@cache
def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str) -> str | None:
    mods = _modules()
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


@cache
def _tree(module: str) -> ast.Module:
    return ast.parse(_modules()[module].read_text(), filename=str(_modules()[module]))


@cache
def _imports(module: str) -> frozenset[str]:
    """hcbench modules that ``module`` imports (``from pkg import name`` counts as ``pkg.name``
    when that is a module, else as ``pkg``)."""
    mods = _modules()
    path = mods[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    deps: set[str | None] = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.Import):
            deps |= {_resolve(a.name) for a in node.names if a.name.split(".")[0] == "hcbench"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "hcbench":
                continue
            for a in node.names:
                full = f"{base}.{a.name}"
                deps.add(full if full in mods else _resolve(base))
    deps.discard(None)
    deps.discard(module)
    return frozenset(d for d in deps if d is not None)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    graph = {m: set(_imports(m)) for m in _modules()}
    assert _cycles(graph) == []


def test_no_import_cycle_between_top_level_packages():
    graph: dict[str, set[str]] = {}
    for m in _modules():
        graph.setdefault(_package(m), set()).update(_package(d) for d in _imports(m) if _package(d) != _package(m))
    graph.pop("hcbench", None)  # the package root: __version__ only
    graph = {k: v - {"hcbench"} for k, v in graph.items()}
    assert _cycles(graph) == []


def test_runner_and_executors_do_not_import_each_other_both_ways():
    runner, executors = "hcbench.engine.runner", "hcbench.engine.executors"
    assert executors not in _imports(runner)


def _importers_of(prefix: str, under: str) -> dict[str, list[str]]:
    return {m: sorted(d for d in _imports(m) if d == prefix or d.startswith(prefix + "."))
            for m in _modules() if m == under or m.startswith(under + ".")}


def test_results_never_imports_the_engine():
    bad = {m: d for m, d in _importers_of("hcbench.engine", "hcbench.results").items() if d}
    assert bad == {}


@pytest.mark.parametrize("low", ["hcbench.data", "hcbench.metrics"])
def test_data_and_metrics_import_no_layer_above_them(low):
    above = ("hcbench.engine", "hcbench.results", "hcbench.adapters", "hcbench.pretrain", "hcbench.cli",
             "hcbench.score", "hcbench.synth", "hcbench.listing")
    bad = {m: sorted(d for d in _imports(m) if d.startswith(above))
           for m in _modules() if m.startswith(low)}
    assert {m: d for m, d in bad.items() if d} == {}


@pytest.mark.parametrize("bottom", ["hcbench.io", "hcbench.errors"])
def test_bottom_layer_modules_import_nothing_from_hcbench(bottom):
    assert _imports(bottom) == frozenset()


def test_atomic_writes_and_hashing_have_one_home():
    """Every package writes and hashes files through hcbench.io; no copy of either remains."""
    copies = []
    for m in _modules():
        if m == "hcbench.io":
            continue
        for node in ast.walk(_tree(m)):
            if isinstance(node, ast.FunctionDef) and node.name in ("atomic_write_bytes", "atomic_write_text",
                                                                   "atomic_write_json", "sha256_file"):
                copies.append(f"{m}.{node.name}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "mkstemp":
                copies.append(f"{m}: tempfile.mkstemp at line {node.lineno}")
    assert copies == []


def _library_modules() -> list[str]:
    return [m for m in _modules() if m != "hcbench.cli" and not m.startswith("hcbench.cli.")]


def _safe_globals_args(tree: ast.Module) -> set[int]:
    """ids of the nodes inside ``torch.serialization.safe_globals([...])`` calls: naming
    ``argparse.Namespace`` there lets ``torch.load`` read released training checkpoints that
    pickled their own namespace; it reads no command line."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("safe_globals", "add_safe_globals"):
            out |= {id(n) for arg in node.args for n in ast.walk(arg)}
    return out


def test_no_library_function_reads_argparse_or_prints():
    found = []
    for m in _library_modules():
        tree = _tree(m)
        allowed = _safe_globals_args(tree)
        uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "argparse"]
        only_safe_globals = all(id(n) in allowed for n in uses)
        for node in ast.walk(tree):
            where = f"{_modules()[m].relative_to(PKG.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import) and any(a.name == "argparse" for a in node.names):
                if not (uses and only_safe_globals):
                    found.append(f"{where} imports argparse")
            elif isinstance(node, ast.ImportFrom) and node.module == "argparse":
                found.append(f"{where} imports from argparse")
            elif isinstance(node, ast.Name) and node.id == "argparse" and id(node) not in allowed:
                found.append(f"{where} uses argparse")
            elif isinstance(node, ast.Name) and node.id == "Namespace":
                found.append(f"{where} names Namespace")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                found.append(f"{where} calls print()")
            elif isinstance(node, ast.arg) and node.arg == "args" and isinstance(node.annotation, ast.Attribute):
                found.append(f"{where} takes args: {ast.unparse(node.annotation)}")
            elif isinstance(node, ast.Constant) and node.value == "HCBENCH_QUIET":
                found.append(f"{where} reads quiet mode from the environment")
    assert found == []


def test_no_library_function_takes_an_args_namespace():
    """A function whose parameter is called ``args`` and that reads attributes off it is reading
    a CLI namespace (``args.out``); library functions take typed configs instead."""
    found = []
    for m in _library_modules():
        for fn in ast.walk(_tree(m)):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            names = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            if "args" not in names:
                continue
            if any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "args"
                   for n in ast.walk(fn)):
                found.append(f"{m}.{fn.name}")
    assert found == []


def test_pick_device_and_the_data_root_rule_are_defined_once():
    defs: dict[str, list[str]] = {}
    for m in _modules():
        for node in ast.walk(_tree(m)):
            if isinstance(node, ast.FunctionDef) and node.name in ("pick_device", "dataset_root"):
                defs.setdefault(node.name, []).append(m)
    assert defs == {"pick_device": ["hcbench.engine.device"], "dataset_root": ["hcbench.data.cards"]}
