"""``hcbench list backbones|cards|suites|datasets``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROWS_CACHE_VERSION = 1


def _rows_cache_path() -> Path:
    # the folder of hcbench.backbones.stats.cache_path, which cannot be imported without torch
    # (a test keeps the two equal)
    root = os.environ.get("HCBENCH_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hcbench")
    return Path(root) / "backbone_rows.json"


def _rows_key(input_size: tuple[int, int], pkg: Path | None = None) -> str | None:
    """What the built-in backbones' rows depend on, computed without importing them (or torch):
    every source file of hcbench, the torch and timm versions and the input size. None when that
    is not enough -- backbone plugins are installed (their code is only known once imported) or
    the registry is already loaded in this process (an ``--include`` file may have added some)."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, entry_points, version

    from hcbench.registry import BACKBONES

    if "hcbench.backbones" in sys.modules or list(entry_points(group=BACKBONES.group)):
        return None
    pkg = pkg or Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(pkg.rglob("*.py")):  # ~140 files, a few ms
        h.update(f.relative_to(pkg).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    for dist in ("torch", "timm"):
        try:
            h.update(f"{dist} {version(dist)};".encode())
        except PackageNotFoundError:
            h.update(f"{dist} -;".encode())
    h.update(f"{input_size[0]}x{input_size[1]} v{ROWS_CACHE_VERSION}".encode())
    return h.hexdigest()


def _load_rows(key: str, input_size: tuple[int, int]) -> list[dict] | None:
    try:
        data = json.loads(_rows_cache_path().read_text(encoding="utf-8"))
        entry = data[f"{input_size[0]}x{input_size[1]}"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("rows"), list):
        return None
    return entry["rows"]


def _save_rows(key: str, input_size: tuple[int, int], rows: list[dict]) -> None:
    """Best effort, like the counts cache: without it the listing is only slower."""
    from hcbench.io import atomic_write_json

    path = _rows_cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    data = data if isinstance(data, dict) else {}
    data[f"{input_size[0]}x{input_size[1]}"] = {"key": key, "rows": rows}
    try:
        atomic_write_json(path, data)
    except OSError:
        pass


def _backbone_rows(input_size: tuple[int, int], pattern: str) -> list[dict]:
    """One row per registered backbone. With nothing changed since the last full listing the rows
    come from a cache keyed by :func:`_rows_key`, without importing torch (2.4 s of the 2.6 s a
    cached listing took otherwise); else from the per-backbone counts cache or a build on the meta
    device (see hcbench.backbones.stats)."""
    import fnmatch

    key = _rows_key(input_size)
    if key is not None:
        cached = _load_rows(key, input_size)
        if cached is not None:
            return [r for r in cached if fnmatch.fnmatchcase(r["name"], pattern)]
    rows = _built_rows(input_size, pattern)
    if key is not None and pattern == "*" and all(r["params"] is not None for r in rows):
        _save_rows(key, input_size, rows)
    return rows


def _built_rows(input_size: tuple[int, int], pattern: str) -> list[dict]:
    # counts come from a fingerprinted cache, else from a build on the meta device (no weights,
    # no arithmetic): see hcbench.backbones.stats
    from hcbench.backbones import build_backbone
    from hcbench.backbones.stats import cached_stats, load_cache, save_cache
    from hcbench.registry import BACKBONES

    rows = []
    cache = load_cache()
    changed = False
    for name in BACKBONES.names(pattern):
        entry = BACKBONES.entry(name)
        row = {"name": name, "source": entry.source, "description": entry.meta.get("description", ""),
               "params": None, "gflops": None, "embed_dim": None, "stride": None}
        try:
            stats, updated = cached_stats(cache, name, entry.obj, entry.meta,
                                          lambda name=name: build_backbone(name, input_size), *input_size)
            row.update(stats)
            changed |= updated
        except Exception as e:  # a plugin that cannot be built is listed with its error
            row["description"] = f"cannot build: {type(e).__name__}: {e}"
        rows.append(row)
    if changed:
        save_cache(cache)
    for name, err in sorted(BACKBONES.errors.items()):
        rows.append({"name": name, "source": "entry-point (failed)", "description": err,
                     "params": None, "gflops": None, "embed_dim": None, "stride": None})
    return rows


def _card_rows(pattern: str) -> list[dict]:
    import fnmatch

    from hcbench.cards import list_cards

    return [{"name": c.name, "family": c.family, "dataset": f"{c.dataset.name}/{c.dataset.split}",
             "primary": c.eval.primary, "input": f"{c.input.height}x{c.input.width}", "version": c.version,
             "epochs": c.schedule.epochs, "tiers": ",".join(["full", *c.tiers])}
            for c in list_cards() if fnmatch.fnmatchcase(c.name, pattern)]


def _suite_rows(pattern: str) -> list[dict]:
    import fnmatch

    from hcbench.cards import list_suites

    return [{"name": s.name, "cards": len(s.cards), "tier": s.tier,
             "status": "complete" if s.complete else f"incomplete: missing {', '.join(s.missing)}",
             "members": ", ".join(s.cards), "description": s.description}
            for s in list_suites() if fnmatch.fnmatchcase(s.name, pattern)]


def _dataset_rows(pattern: str) -> list[dict]:
    import fnmatch

    from hcbench.data.cards import list_dataset_cards

    return [{"name": d.name, "family": d.family, "format": d.format, "splits": ", ".join(
        f"{k}" + (f" ({v.size})" if v.size is not None else "") for k, v in d.splits.items()),
        "synthetic": d.synthetic, "license": d.license.splitlines()[0] if d.license else ""}
        for d in list_dataset_cards() if fnmatch.fnmatchcase(d.name, pattern)]


def _fmt(key: str, value) -> str:
    if value is None:
        return "—"
    if key == "params":
        return f"{value / 1e6:.2f}M"
    if key == "gflops":  # 3 significant digits: a tiny backbone's 0.0716 must not read 0.07 or 0.0
        from hcbench.results.fmt import significant

        return significant(value)
    return str(value)


def _family_rows(pattern: str) -> list[dict]:
    """Registered task families (hcbench.families): label, metrics (direction), cards, source."""
    import fnmatch

    from hcbench.cards import list_cards
    from hcbench.families.base import families
    from hcbench.registry import FAMILIES

    rows = []
    for fam in families():
        if not fnmatch.fnmatchcase(fam.name, pattern):
            continue
        metrics = ", ".join(m.key + ("" if m.higher_is_better else " (lower)") for m in fam.metrics)
        rows.append({"name": fam.name, "label": fam.label, "metrics": metrics,
                     "cards": len(list_cards(fam.name)), "source": FAMILIES.entry(fam.name).source})
    return rows


def list_what(what: str, input_size: tuple[int, int] = (256, 192), pattern: str = "*", fmt: str = "table"):
    """The listing as JSON text (``fmt="json"``) or a rich Table for the caller to print."""
    rows = {"backbones": lambda: _backbone_rows(input_size, pattern), "cards": lambda: _card_rows(pattern),
            "suites": lambda: _suite_rows(pattern), "datasets": lambda: _dataset_rows(pattern),
            "families": lambda: _family_rows(pattern)}[what]()
    if fmt == "json":
        return json.dumps(rows, indent=2)
    from rich.table import Table

    title = what if what != "backbones" else f"backbones (params, GFLOPs = multiply-adds at {input_size[0]}x{input_size[1]})"
    table = Table(title=title)
    keys = list(rows[0]) if rows else ["name"]
    for k in keys:
        table.add_column(k, justify="right" if k in ("params", "gflops", "embed_dim", "stride", "cards") else "left")
    for r in rows:
        table.add_row(*(_fmt(k, r[k]) for k in keys))
    return table
