"""``write_suite``: the five synthetic datasets, each in its real on-disk format, from one seed."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from pathlib import Path

DATASETS = ("synth_pose", "synth_parsing", "synth_reid", "synth_attr", "synth_det")

# Records per split. ``reid`` is (train ids, images per train id, test ids).
SIZES: dict[str, dict] = {
    "smoke": {
        "synth_pose": {"train": 400, "val": 100},
        "synth_parsing": {"train": 300, "val": 60},
        "synth_reid": {"train_ids": 60, "imgs_per_id": 6, "test_ids": 30},
        "synth_attr": {"train": 600, "val": 100, "test": 200},
        "synth_det": {"train": 200, "val": 50},
    },
    "small": {
        "synth_pose": {"train": 1800, "val": 400},
        "synth_parsing": {"train": 1400, "val": 270},
        "synth_reid": {"train_ids": 270, "imgs_per_id": 6, "test_ids": 130},
        "synth_attr": {"train": 2700, "val": 450, "test": 900},
        "synth_det": {"train": 900, "val": 220},
    },
}
PREVIEW_PER_SPLIT = 6


def suite_counts(size: str = "smoke", fraction: float = 1.0) -> dict[str, dict[str, int]]:
    """The counts of a size tier, optionally scaled down (tests) -- every count stays >= 2."""
    if size not in SIZES:
        raise ValueError(f"unknown synthetic suite size {size!r}; choose one of {sorted(SIZES)}")
    out = {}
    for name, c in SIZES[size].items():
        out[name] = {k: (v if k == "imgs_per_id" else max(2, int(round(v * fraction)))) for k, v in c.items()}
    return out


def _write_one(name: str, root: Path, counts: dict[str, int], seed: int, keep: int, preview: Path | None) -> dict:
    if name == "synth_pose":
        from hcbench.synth.pose import write_pose
        from hcbench.synth.preview import pose_sheet

        shown = write_pose(root, counts, seed, keep)
        if preview:
            for split, items in shown.items():
                pose_sheet(items, preview / f"{name}_{split}.png")
        return {}
    if name == "synth_parsing":
        from hcbench.synth.parsing import write_parsing
        from hcbench.synth.preview import parsing_sheet

        shown = write_parsing(root, counts, seed, keep)
        if preview:
            for split, items in shown.items():
                parsing_sheet(items, preview / f"{name}_{split}.png")
        return {}
    if name == "synth_reid":
        from hcbench.synth.preview import reid_sheet
        from hcbench.synth.reid import write_reid

        out = write_reid(root, counts["train_ids"], counts["imgs_per_id"], counts["test_ids"], seed, keep)
        if preview:
            reid_sheet(out["shown"], preview / f"{name}.png")
        roles: dict[str, int] = {}
        for r in out["records"]:
            roles[r["role"] if r["pid"] >= 0 else "junk"] = roles.get(r["role"] if r["pid"] >= 0 else "junk", 0) + 1
        return {"images": roles}
    if name == "synth_attr":
        from hcbench.synth.attributes import ATTRIBUTES, write_attributes
        from hcbench.synth.preview import attribute_sheet

        out = write_attributes(root, counts, seed, keep * 2)
        if preview:
            for split, items in out["shown"].items():
                attribute_sheet(items, ATTRIBUTES, preview / f"{name}_{split}.png")
        return {"positive_rate": dict(zip(ATTRIBUTES, [round(float(v), 3) for v in out["labels"].mean(0)], strict=True))}
    if name == "synth_det":
        from hcbench.synth.detection import write_detection
        from hcbench.synth.preview import detection_sheet

        shown = write_detection(root, counts, seed, keep)
        if preview:
            for split, items in shown.items():
                detection_sheet(items, preview / f"{name}_{split}.png")
        return {}
    raise ValueError(f"unknown synthetic dataset {name!r}; known: {', '.join(DATASETS)}")


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
    counts = suite_counts(size, fraction)
    names = list(datasets) if datasets is not None else list(DATASETS)
    for n in names:
        if n not in DATASETS:
            raise ValueError(f"unknown synthetic dataset {n!r}; known: {', '.join(DATASETS)}")
    preview = Path(preview) if preview is not None else None
    result: dict[str, Path] = {}
    for name in names:
        final, tmp = out / name, out / f".{name}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        facts = _write_one(name, tmp, counts[name], seed, PREVIEW_PER_SPLIT if preview else 0, preview)
        manifest = {"generator": "hcbench.synth", "hcbench": __version__, "dataset": name, "size": size,
                    "seed": seed, "fraction": fraction, "counts": counts[name], **facts}
        (tmp / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        result[name] = final
    return result
