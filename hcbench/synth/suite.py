"""``write_suite``: the synthetic datasets, each in its real on-disk format, from one seed.

The datasets, their record counts per size tier, writers and previews are declared by the
registered families (``Family.synthetic``), so a plugin family's synthetic data is written too.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hcbench.registry import FAMILIES, load_ref

PREVIEW_PER_SPLIT = 6

# a hcbench.families.base.SynthDataset; families sit above synth (they use its writers), so
# this module reaches them through the registry only
SynthDataset = Any


def synth_specs() -> dict[str, SynthDataset]:
    """Every registered family's synthetic datasets (``Family.synthetic``), in family order."""
    out: dict[str, SynthDataset] = {}
    for fam in sorted((e.obj for e in FAMILIES), key=lambda f: (f.order, f.name)):
        for spec in fam.synthetic:
            if spec.name in out:
                raise ValueError(f"synthetic dataset {spec.name!r} is declared by two families")
            out[spec.name] = spec
    return out


def __getattr__(name: str):  # DATASETS / SIZES follow the registry (plugin families included)
    if name == "DATASETS":
        return tuple(synth_specs())
    if name == "SIZES":
        sizes: dict[str, dict] = {}
        for spec in synth_specs().values():
            for tier, counts in spec.sizes.items():
                sizes.setdefault(tier, {})[spec.name] = dict(counts)
        return sizes
    raise AttributeError(name)


def suite_counts(size: str = "smoke", fraction: float = 1.0) -> dict[str, dict[str, int]]:
    """The counts of a size tier, optionally scaled down (tests) -- every count stays >= 2."""
    specs = synth_specs()
    tiers = sorted({t for s in specs.values() for t in s.sizes})
    if size not in tiers:
        raise ValueError(f"unknown synthetic suite size {size!r}; choose one of {tiers}")
    out = {}
    for name, spec in specs.items():
        c = spec.sizes.get(size)
        if c is None:
            raise ValueError(f"synthetic dataset {name!r} has no {size!r} size")
        out[name] = {k: (v if k in spec.unscaled else max(2, int(round(v * fraction)))) for k, v in c.items()}
    return out


def _write_one(spec: SynthDataset, root: Path, counts: dict[str, int], seed: int, keep: int,
               preview: Path | None) -> dict:
    facts, shown = load_ref(spec.write)(root, counts, seed, keep)
    if preview and spec.preview is not None:
        load_ref(spec.preview)(shown, preview, spec.name)
    return dict(facts or {})


def write_suite(out: Path, size: str = "smoke", seed: int = 0, preview: Path | None = None, *,
                datasets: Iterable[str] | None = None, fraction: float = 1.0) -> dict[str, Path]:
    """Write the synthetic suite under ``out/<dataset>/``; returns dataset name -> root folder.

    Deterministic: the same (size, seed, fraction) gives byte-identical files. Each dataset is
    written to a hidden sibling folder and renamed into place when complete, so an interrupted
    run never leaves a half dataset under the real name. ``preview``: also draw contact sheets
    with the annotations into that folder. ``datasets``/``fraction`` (a subset, scaled-down
    counts) exist for tests.
    """
    from hcbench import __version__

    out = Path(out)
    specs = synth_specs()
    counts = suite_counts(size, fraction)
    names = list(datasets) if datasets is not None else list(specs)
    for n in names:
        if n not in specs:
            raise ValueError(f"unknown synthetic dataset {n!r}; known: {', '.join(specs)}")
    preview = Path(preview) if preview is not None else None
    result: dict[str, Path] = {}
    for name in names:
        final, tmp = out / name, out / f".{name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        facts = _write_one(specs[name], tmp, counts[name], seed, PREVIEW_PER_SPLIT if preview else 0, preview)
        manifest = {"generator": "hcbench.synth", "hcbench": __version__, "dataset": name, "size": size,
                    "seed": seed, "fraction": fraction, "counts": counts[name], **facts}
        (tmp / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        result[name] = final
    return result
