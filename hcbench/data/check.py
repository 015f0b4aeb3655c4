"""``hcbench data check``: verify a dataset copy against its card, listing every problem found.

For each split of the card: every listed file/folder exists; the card's reader parses it (a
:class:`DataFormatError` names file and record); the record count matches the card (and, for
ReID, the query/gallery counts in ``options.role_sizes``); per-family record checks (keypoint
count, attribute width and values); and every referenced image exists and decodes fully
(at most ``limit`` images per split). Parsing labels must decode, match their image's size and,
after the card's ``label_map``, hold only class ids in ``[0, num_classes)`` or the ignore value.

Generic over ``card.family``: it works for every card, the pose, real and ``synth_*`` ones alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard, dataset_root, get_dataset_card
from hcbench.data.transforms.image import image_size
from hcbench.data.types import DataFormatError, DatasetSplit, ParsingMeta

# roles a reader can do without (a missing one is a note, not a problem)
OPTIONAL_ROLES = frozenset({"detections", "head_boxes"})
_READ_ERRORS = (DataFormatError, FileNotFoundError, ValueError, KeyError, IndexError, TypeError, OSError)


@dataclass
class CheckReport:
    name: str
    root: Path
    family: str = ""
    format: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)  # split -> counts

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------- per-family checks
def _record_name(s: Any, i: int) -> str:
    for attr in ("sample_id", "image_id"):
        if hasattr(s, attr):
            v = getattr(s, attr)
            if attr == "image_id" and getattr(s, "ann_id", -1) != -1:
                return f"image_id={v} ann_id={s.ann_id}"
            return f"{attr}={v}"
    return f"#{i} {Path(getattr(s, 'image', '')).name}"


def _check_records(card: DatasetCard, ds: DatasetSplit) -> list[str]:
    """Cheap checks over every record (no image decoding)."""
    where = ds.files[0] if ds.files else card.name
    out: list[str] = []
    if card.family == "pose":
        k = len(card.keypoints.names) if card.keypoints else 0
        for i, s in enumerate(ds.samples):
            kp = np.asarray(s.keypoints)
            if kp.ndim != 2 or kp.shape != (k, 3):
                out.append(f"{where} [record {_record_name(s, i)}]: keypoints have shape {kp.shape}, "
                           f"the card {card.name!r} defines {k} keypoints ({k} x 3 expected)")
    elif card.family == "attributes":
        a = len(card.attributes or [])
        for i, s in enumerate(ds.samples):
            lab = np.asarray(s.labels)
            if lab.shape != (a,):
                out.append(f"{where} [record {_record_name(s, i)}]: {lab.size} attribute labels, "
                           f"the card {card.name!r} lists {a}")
            elif not np.isin(lab, (0, 1)).all():
                out.append(f"{where} [record {_record_name(s, i)}]: labels {sorted(set(lab.tolist()))} "
                           "are not all 0/1")
    elif card.family == "detection":
        for i, s in enumerate(ds.samples):
            for key in ("boxes", "visible", "ignore"):
                b = np.asarray(getattr(s, key))
                if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
                    out.append(f"{where} [record {_record_name(s, i)}]: {key} has shape {b.shape} "
                               "or non-finite values (N x 4 expected)")
    elif card.family == "reid":
        n = card.num_cameras or 0
        for i, s in enumerate(ds.samples):
            if s.camid < 0 or (n and s.camid >= n):
                out.append(f"{s.image} [record {_record_name(s, i)}]: camera {s.camid + 1} outside 1..{n}")
    return out


def _image_jobs(card: DatasetCard, ds: DatasetSplit, limit: int | None
                ) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    """(label, job) per distinct image, at most ``limit``; a job returns the problems it found."""
    seen: set[Path] = set()
    meta = ds.meta
    for i, s in enumerate(ds.samples):
        path = Path(s.image)
        if path in seen:
            continue
        if limit is not None and len(seen) >= limit:
            return
        seen.add(path)
        rec = _record_name(s, i)
        if card.family == "parsing" and isinstance(meta, ParsingMeta):
            yield str(path), (lambda s=s, rec=rec: _check_parsing_pair(s, meta, rec))
        else:
            yield str(path), (lambda path=path, rec=rec: _check_image(path, rec))


def _check_image(path: Path, rec: str) -> list[str]:
    try:
        image_size(path)
    except FileNotFoundError:
        return [f"{path} [record {rec}]: image missing"]
    except DataFormatError as e:
        return [f"{e} [record {rec}]"]
    return []


def _check_parsing_pair(sample: Any, meta: ParsingMeta, rec: str) -> list[str]:
    from hcbench.data.transforms.parsing import load_pair

    try:
        _, label = load_pair(sample, meta)
    except FileNotFoundError as e:
        return [f"{e} [record {rec}]"]
    except DataFormatError as e:
        return [str(e) if e.record is not None else f"{e} [record {rec}]"]
    values = np.unique(label)
    bad = values[(values >= meta.num_classes) & (values != meta.ignore_index)]
    if bad.size:
        after = " after the card's label_map" if meta.label_map is not None else ""
        return [f"{sample.label} [record {rec}]: label values {bad.tolist()} outside [0, {meta.num_classes})"
                f"{after} and not the ignore value {meta.ignore_index}"]
    return []


# --------------------------------------------------------------------------- driver
def _optional_roles(card: DatasetCard) -> set[str]:
    from hcbench.registry import DATASETS

    roles = set(OPTIONAL_ROLES) | set(card.options.get("optional_files", []))
    try:
        roles |= set(DATASETS.entry(card.format).meta.get("optional_roles", ()))
    except KeyError:
        pass
    return roles


def _role_counts(ds: DatasetSplit) -> dict[str, int]:
    counts: dict[str, int] = {}
    for s in ds.samples:
        counts[s.role] = counts.get(s.role, 0) + 1
    return counts


def _progress(total_hint: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    quiet = os.environ.get("HCBENCH_QUIET") or not console.is_terminal
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=bool(quiet))


def check_dataset(name: str, root: str | Path | None = None, limit: int | None = None) -> CheckReport:
    """Check the copy of dataset ``name`` at ``root`` (default ``$HCBENCH_DATA/<name>``)."""
    from hcbench.registry import DATASETS

    card = get_dataset_card(name)
    root = dataset_root(name, root)
    rep = CheckReport(card.name, root, card.family, card.format)
    if not root.is_dir():
        rep.problems.append(f"{root}: dataset root folder missing (pass --root DIR or set $HCBENCH_DATA)")
        return rep
    reader = DATASETS.get(card.format)
    optional = _optional_roles(card)
    for split, spec in card.splits.items():
        row: dict[str, Any] = {"records": None, "expected": spec.size, "images_checked": 0, "problems": 0}
        rep.summary[split] = row
        before = len(rep.problems)
        missing = False
        for role, rel in spec.files.items():
            path = root / rel
            if path.exists():
                continue
            if role in optional:
                rep.notes.append(f"{path}: optional {role} file of split {split!r} not present")
            else:
                rep.problems.append(f"{path}: missing file ({role} of split {split!r})")
                missing = True
        if missing:
            row["problems"] = len(rep.problems) - before
            continue
        try:
            ds = reader(root, split, card, limit=None)
        except _READ_ERRORS as e:
            msg = str(e) if isinstance(e, DataFormatError) else f"{type(e).__name__}: {e}"
            rep.problems.append(msg if isinstance(e, DataFormatError) else
                                f"{root} [split {split}]: the {card.format!r} reader failed: {msg}")
            row["problems"] = len(rep.problems) - before
            continue
        row["records"] = len(ds)
        where = ds.files[0] if ds.files else root
        if spec.size is not None and len(ds) != spec.size:
            rep.problems.append(f"{where}: wrong count: split {split!r} has {len(ds)} records, "
                                f"the card expects {spec.size}")
        if card.family == "reid":
            counts = _role_counts(ds)
            row.update(counts)
            for role, want in card.options.get("role_sizes", {}).get(split, {}).items():
                if counts.get(role, 0) != want:
                    rep.problems.append(f"{where}: wrong count: split {split!r} has {counts.get(role, 0)} "
                                        f"{role} images, the card expects {want}")
        rep.problems += _check_records(card, ds)
        jobs = list(_image_jobs(card, ds, limit))
        with _progress(len(jobs)) as progress:
            task = progress.add_task(f"{card.name}/{split} images", total=len(jobs))
            for _, job in jobs:
                rep.problems += job()
                progress.advance(task)
        row["images_checked"] = len(jobs)
        row["problems"] = len(rep.problems) - before
    return rep


def print_report(report: CheckReport, console: Any = None) -> None:
    """One-screen summary per split; when something is wrong, every problem on its own line."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(highlight=False, soft_wrap=True)
    console.print(f"dataset {report.name} ({report.family}, format {report.format}) at {report.root}", markup=False)
    if report.summary:
        extra = sorted({k for r in report.summary.values() for k in r} - {"records", "expected", "images_checked",
                                                                          "problems"})
        table = Table(show_edge=False, header_style="bold")
        for col in ("split", "records", "expected", *extra, "images checked", "problems"):
            table.add_column(col, justify="left" if col == "split" else "right")
        for split, r in report.summary.items():
            fmt = lambda v: "-" if v is None else f"{v:,}" if isinstance(v, int) else str(v)  # noqa: E731
            table.add_row(split, fmt(r.get("records")), fmt(r.get("expected")), *(fmt(r.get(k)) for k in extra),
                          fmt(r.get("images_checked")), fmt(r.get("problems")))
        console.print(table)
    for note in report.notes:
        console.print(f"note: {note}", markup=False)
    if report.ok:
        console.print("OK: every check passed", markup=False)
        return
    console.print(f"{len(report.problems)} problem(s):", markup=False)
    for p in report.problems:
        console.print(f"  {p}", markup=False)
