"""``hcbench data check``: verify a dataset copy against its card, listing every problem found.

For each split of the card: every listed file/folder exists; the card's reader parses it (a
:class:`DataFormatError` names file and record); the record count matches the card (and, for
ReID, the query/gallery counts in ``options.role_sizes``); per-family record checks (keypoint
count, attribute width and values); and every referenced image exists and decodes fully
(an evenly spread sample of ``SAMPLE`` images per split by default, every image with
``full``, the first ``limit`` with ``limit``), and its real size equals the size the annotation
file declares (a wrong ``width``/``height`` silently moves or drops instances). Parsing labels must
decode, match their image's size and, after the card's ``label_map``, hold only class ids in
``[0, num_classes)`` or the ignore value.

Nothing a reader leaves out goes unsaid: the counts a reader reports in ``DatasetSplit.extra
["skipped"]`` (COCO: crowd, no labelled keypoint, a box empty after clipping to the declared
image) are in the summary and the notes. Synthetic copies are compared with the card's counts
(those of ``hcbench data synth --size smoke``, seed 0) unless their ``synth.json`` says another
size, fraction or seed.

Generic over ``card.family``: the per-family parts (record checks, split counts, the parsing
label check) are hooks of the registered :class:`~hcbench.families.base.Family`, so a plugin
family's datasets are checked the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcbench.data.cards import DatasetCard, DatasetCardError, dataset_root, get_dataset_card
from hcbench.data.transforms.image import image_size
from hcbench.data.types import DataFormatError, DatasetSplit

SAMPLE = 200  # images decoded per split by default (--full: all)
SHOW = 5  # problems of one kind listed per split before they are only counted
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
def record_name(s: Any, i: int) -> str:
    """How a problem message names record ``i`` (its sample/image/annotation id, else its image)."""
    for attr in ("sample_id", "image_id"):
        if hasattr(s, attr):
            v = getattr(s, attr)
            if attr == "image_id" and getattr(s, "ann_id", -1) != -1:
                return f"image_id={v} ann_id={s.ann_id}"
            return f"{attr}={v}"
    return f"#{i} {Path(getattr(s, 'image', '')).name}"


_record_name = record_name  # the old private name


def _family(card: DatasetCard):
    from hcbench.registry import FAMILIES  # families sit above data: their hooks are found by name

    return FAMILIES.get(card.family)


def _check_records(card: DatasetCard, ds: DatasetSplit) -> list[str]:
    """Cheap checks over every record (no image decoding): the family's ``check_records``."""
    check = _family(card).hook("check_records")
    return list(check(card, ds)) if check is not None else []


def counted(where: str, what: str, culprits: list[tuple[str, str]], show: int = SHOW) -> list[str]:
    """Problems of one kind from ``(record, detail)`` culprits: the first ``show`` each on a line,
    then how many more. For family hooks, so a file with 10,000 bad values reports them readably
    and completely."""
    out = [f"{where} [record {rec}]: {what}: {detail}" for rec, detail in culprits[:show]]
    if len(culprits) > show:
        out.append(f"{where}: {len(culprits) - show} more record(s) where {what} (same check, {len(culprits)} in all)")
    return out


def declared_size(s: Any) -> tuple[int, int] | None:
    """(width, height) a record says its image has (COCO ``images[].width/height``), or None."""
    w, h = getattr(s, "width", 0) or 0, getattr(s, "height", 0) or 0
    return (int(w), int(h)) if w > 0 and h > 0 else None


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (first and last included), deterministic."""
    if k >= n:
        return list(range(n))
    if k <= 1:
        return [0][:k]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def _image_jobs(card: DatasetCard, ds: DatasetSplit, limit: int | None, full: bool = True
                ) -> tuple[list[tuple[str, Callable[[], list[str]]]], int]:
    """(label, job) per image to check, and how many distinct images the split references.
    ``limit``: the first ``limit`` images; else every image with ``full``, else an even sample of
    ``SAMPLE``. A job returns the problems it found; a family's ``check_image`` (parsing: image +
    label map) replaces the plain decode check. The real size is compared with the declared one."""
    first: dict[Path, tuple[int, Any]] = {}
    for i, s in enumerate(ds.samples):
        image = getattr(s, "image", None)
        if image is None:  # a family whose records carry no image file (e.g. text only)
            continue
        first.setdefault(Path(image), (i, s))
    paths = list(first)
    if limit is not None:
        chosen = paths[:limit]
    elif full:
        chosen = paths
    else:
        chosen = [paths[i] for i in _pick(len(paths), SAMPLE)]
    meta = ds.meta
    special = _family(card).hook("check_image")
    jobs = []
    for path in chosen:
        i, s = first[path]
        rec = record_name(s, i)
        size = declared_size(s)
        if special is not None:
            jobs.append((str(path), lambda s=s, rec=rec, path=path, size=size:
                         special(s, meta, rec) + _check_size(path, rec, size, decode=False)))
        else:
            jobs.append((str(path), lambda path=path, rec=rec, size=size: _check_image(path, rec, size)))
    return jobs, len(paths)


def _check_size(path: Path, rec: str, size: tuple[int, int] | None, decode: bool = False,
                real: tuple[int, int] | None = None) -> list[str]:
    if size is None:
        return []
    if real is None:
        try:
            from PIL import Image

            with Image.open(path) as im:  # the header is enough for the size
                real = im.size
        except OSError:
            return []  # unreadable: the decode check (or the family's) says so
    if tuple(real) != size:
        return [f"{path} [record {rec}]: image is {real[0]}x{real[1]} but the annotation file declares "
                f"{size[0]}x{size[1]} (width x height); boxes are clipped to, and keypoints checked against, "
                "the declared size"]
    return []


def _check_image(path: Path, rec: str, size: tuple[int, int] | None = None) -> list[str]:
    try:
        real = image_size(path)
    except FileNotFoundError:
        return [f"{path} [record {rec}]: image missing"]
    except DataFormatError as e:
        return [f"{e} [record {rec}]"]
    return _check_size(path, rec, size, real=real)


# --------------------------------------------------------------------------- driver
def _optional_roles(card: DatasetCard) -> set[str]:
    from hcbench.registry import DATASETS

    roles = set(OPTIONAL_ROLES) | set(card.options.get("optional_files", []))
    try:
        roles |= set(DATASETS.entry(card.format).meta.get("optional_roles", ()))
    except KeyError:
        pass
    return roles


def _progress(total_hint: int, quiet: bool = False):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    quiet = quiet or not console.is_terminal
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True, disable=bool(quiet))


def _synth_size(card: DatasetCard, root: Path) -> str | None:
    """The size preset of a synthetic copy (its ``synth.json``) when it is not the card's (smoke, whole)."""
    if not card.synthetic:
        return None
    import json

    try:
        facts = json.loads((root / "synth.json").read_text())
    except (OSError, ValueError):
        return None
    size, fraction, seed = facts.get("size", "smoke"), facts.get("fraction", 1.0), facts.get("seed", 0)
    if size == "smoke" and fraction == 1.0 and seed == 0:
        return None
    # some counts depend on the draw (synth_reid's gallery), so only smoke at seed 0 is compared
    return f"{size}" + (f" x {fraction}" if fraction != 1.0 else "") + (f", seed {seed}" if seed != 0 else "")


def obtain_notes(card: DatasetCard) -> list[str]:
    """How to get a dataset that is not there, from its card: the ``obtain`` steps (or the
    homepage), the licence, and where the citation is."""
    how = card.obtain.strip() or (f"see {card.homepage}" if card.homepage else "")
    if not how:
        how = f"the dataset card datasets/{card.name}.yaml says nothing; ask whoever added it"
    out = [f"how to obtain {card.name}:\n  " + how.replace("\n", "\n  ")]
    if card.homepage and card.homepage not in how:
        out.append(f"homepage: {card.homepage}")
    if card.license:
        out.append(f"licence: {card.license.strip()}")
    if card.citation:
        out.append(f"cite it as in the 'citation' field of datasets/{card.name}.yaml")
    return out


def check_dataset(name: str, root: str | Path | None = None, limit: int | None = None, *,
                  quiet: bool = False, full: bool = False) -> CheckReport:
    """Check the copy of dataset ``name`` at ``root`` (default ``$HCBENCH_DATA/<name>``); ``quiet``:
    no progress bar; ``full``: decode every image (default: a sample of ``SAMPLE`` per split)."""
    from hcbench.registry import DATASETS

    card = get_dataset_card(name)
    try:
        root = dataset_root(name, root)
    except DatasetCardError:  # no --root and no $HCBENCH_DATA: say so, and how to get the data
        rep = CheckReport(card.name, Path("<no data root>"), card.family, card.format)
        rep.problems.append(f"no data root for {name!r}: pass --root DIR or set $HCBENCH_DATA "
                            f"(the data goes in $HCBENCH_DATA/{name})")
        rep.notes.extend(obtain_notes(card))
        return rep
    rep = CheckReport(card.name, root, card.family, card.format)
    if not root.is_dir():
        rep.problems.append(f"{root}: dataset root folder missing (pass --root DIR or set $HCBENCH_DATA)")
        rep.notes.extend(obtain_notes(card))
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
        other_size = _synth_size(card, root)
        if spec.size is not None and len(ds) != spec.size and other_size:
            rep.notes.append(f"{where}: split {split!r} has {len(ds)} records; the card's {spec.size} are for "
                             f"`hcbench data synth --size smoke` (seed 0), this copy is size {other_size} (synth.json)")
        elif spec.size is not None and len(ds) != spec.size:
            rep.problems.append(f"{where}: wrong count: split {split!r} has {len(ds)} records, "
                                f"the card expects {spec.size}")
        skipped = {k: int(v) for k, v in (ds.extra.get("skipped") or {}).items() if v}
        if skipped:  # a reader never leaves an annotation out without it being said
            row["skipped"] = sum(skipped.values())
            rep.notes.append(f"{where}: split {split!r}: {row['skipped']} annotation(s) not used as records ("
                             + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in skipped.items()) + ")")
        check_split = _family(card).hook("check_split")
        if check_split is not None:  # e.g. ReID query/gallery counts
            problems, counts = check_split(card, split, ds)
            row.update(counts)
            rep.problems += problems
        rep.problems += _check_records(card, ds)
        jobs, n_images = _image_jobs(card, ds, limit, full)
        if len(jobs) < n_images:
            row["images"] = n_images
            how = f"the first, --limit {limit}" if limit is not None else "an even sample"
            rep.notes.append(f"split {split!r}: decoded {len(jobs)} of {n_images} images ({how}; "
                             "--full checks every image)")
        with _progress(len(jobs), quiet) as progress:
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
