"""``hcbench list backbones|cards|suites|datasets``."""

from __future__ import annotations

import json


def _backbone_rows(input_size: tuple[int, int], pattern: str) -> list[dict]:
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
