"""Reading an untrusted submission bundle (a zip) safely: entry checks and bounded extraction.

Everything here happens before or during extraction, so that a hostile archive costs nothing:

- ``check_entries`` refuses, from the central directory alone, absolute paths, ``..``, symlinks,
  duplicate names, encrypted entries, pickle-based file types, too many entries, and entries whose
  declared compression ratio no real predictions file reaches (a zip bomb declares a few KiB that
  expand to GiB; hcbench's own files compress 1-12x, DEFLATE can reach ~1030x);
- ``extraction_budget`` sizes the bytes the bundle may expand to *from its cards*: every record
  names its card and tier, and a predictions file may hold at most ``PRED_BYTES_PER_SAMPLE`` per
  evaluated sample (the tier's ``eval_limit`` or the dataset card's split size) plus a fixed margin;
  small JSON files (records, configs, the manifest) are capped at ``SMALL_FILE_BYTES``;
- ``extract`` streams each entry with a running byte count and stops at the first byte over the
  entry's allowance or the bundle's budget, deleting the partial file.
"""

from __future__ import annotations

import json
import re
import stat
import zipfile
from pathlib import Path, PurePosixPath

from hcbench.errors import UserError

# what a bundle may carry: JSON, numpy arrays (read without pickles), masks and notes
ALLOWED_SUFFIXES = frozenset({".json", ".npz", ".npy", ".png", ".txt", ".md", ".csv"})
# formats that are (or may be) pickles: refused outright, never opened
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin", ".joblib", ".tar", ".pyc"})
MAX_ENTRIES = 100_000
MAX_TOTAL_BYTES = 16 << 30  # uncompressed, whatever the cards say
MAX_RATIO = 200  # declared uncompressed / compressed size of one entry (checked above RATIO_FLOOR)
RATIO_FLOOR = 1 << 20  # tiny entries may compress arbitrarily well
SMALL_FILE_BYTES = 4 << 20  # a record, a config or the manifest
PRED_BYTES_PER_SAMPLE = 512 << 10  # generous: a 473x473 label map is 224 KiB raw, a pose result ~1 KiB
PRED_MARGIN_BYTES = 16 << 20
CHUNK = 1 << 20


class BundleError(UserError, ValueError):
    """A bundle that cannot be packed or read."""


def check_entries(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Problems with the archive's entries themselves; any problem means: do not extract."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    total = 0
    if len(infos) > MAX_ENTRIES:
        return [f"bundle has {len(infos)} entries (limit {MAX_ENTRIES})"]
    for info in infos:
        name = info.filename
        shown = name.encode("unicode_escape").decode()
        parts = name.rstrip("/").split("/")
        if "\x00" in name or "\\" in name:
            problems.append(f"entry {shown!r}: backslash or NUL in the name")
        elif name.startswith("/") or re.match(r"^[A-Za-z]:", name):
            problems.append(f"entry {shown!r}: absolute path")
        elif ".." in parts:
            problems.append(f"entry {shown!r}: '..' component escapes the bundle")
        elif any(p in ("", ".") for p in parts):
            problems.append(f"entry {shown!r}: empty or '.' path component")
        if stat.S_ISLNK(info.external_attr >> 16):
            problems.append(f"entry {shown!r}: symbolic link")
        if info.flag_bits & 0x1:
            problems.append(f"entry {shown!r}: encrypted")
        key = name.rstrip("/").casefold()  # case-insensitive file systems would merge these
        if key in seen:
            problems.append(f"entry {shown!r}: duplicate name (also {seen[key]!r})")
        seen[key] = name
        if info.is_dir():
            continue
        suffix = PurePosixPath(name).suffix.lower()
        if suffix in PICKLE_SUFFIXES:
            problems.append(f"entry {shown!r}: {suffix} files are pickles and are never loaded; "
                            "ship predictions as JSON or numpy arrays")
        elif suffix not in ALLOWED_SUFFIXES:
            problems.append(f"entry {shown!r}: unsupported file type {suffix or '(none)'!r}")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            problems.append(f"entry {shown!r}: declares {info.file_size} bytes from {info.compress_size} compressed "
                            f"(ratio above {MAX_RATIO}: a zip bomb, not a predictions file)")
        total += info.file_size
    if total > MAX_TOTAL_BYTES:
        problems.append(f"bundle expands to {total} bytes (limit {MAX_TOTAL_BYTES})")
    return problems


def _read_small_json(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> object | None:
    if info.file_size > SMALL_FILE_BYTES:
        return None
    with zf.open(info) as f:
        blob = f.read(SMALL_FILE_BYTES + 1)
    try:
        return json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # reported later by the record/manifest checks, with the file's name


def _eval_samples(card_name: str, tier: str) -> int | None:
    """How many samples a card's tier evaluates, when its cards say so."""
    from hcbench.cards import CardError, get_card, resolve
    from hcbench.data.cards import DatasetCardError, get_dataset_card

    try:
        card = resolve(get_card(card_name), tier)
    except (CardError, ValueError):
        return None
    n = card.schedule.eval_limit
    try:
        size = get_dataset_card(card.dataset.name).split(card.dataset.split).size
    except (DatasetCardError, ValueError, AttributeError):
        size = None
    if isinstance(size, dict):  # ReID-like splits list sizes per role
        size = sum(v for v in size.values() if isinstance(v, int)) or None
    if not isinstance(size, int):
        size = None
    return min(v for v in (n, size) if v is not None) if (n or size) else None


def extraction_budget(zf: zipfile.ZipFile) -> tuple[dict[str, int], int]:
    """(allowance per entry name, total budget) in bytes, sized from the records' cards.

    A predictions file that no record names, or whose card does not say how many samples it
    evaluates, gets the whole-bundle limit; the bundle's total never exceeds ``MAX_TOTAL_BYTES``.
    """
    allowance: dict[str, int] = {}
    infos = [i for i in zf.infolist() if not i.is_dir()]
    for info in infos:
        if info.filename.lower().endswith(".json"):
            allowance[info.filename] = SMALL_FILE_BYTES
    for info in infos:
        if not info.filename.lower().endswith(".json"):
            continue
        rec = _read_small_json(zf, info)
        if not isinstance(rec, dict) or not str(rec.get("schema", "")).startswith("hcbench.result/"):
            continue
        pred, card = rec.get("predictions"), rec.get("card")
        if not isinstance(pred, dict) or not isinstance(pred.get("file"), str) or not isinstance(card, dict):
            continue
        arc = str(PurePosixPath(info.filename).parent / pred["file"]).removeprefix("./")
        n = _eval_samples(str(card.get("name")), str(card.get("tier") or "full"))
        allowance[arc] = MAX_TOTAL_BYTES if n is None else PRED_MARGIN_BYTES + n * PRED_BYTES_PER_SAMPLE
    total = 0
    for info in infos:
        total += min(allowance.setdefault(info.filename, SMALL_FILE_BYTES), MAX_TOTAL_BYTES)
    return allowance, min(total, MAX_TOTAL_BYTES)


def extract(zf: zipfile.ZipFile, dest: Path) -> None:
    """Extract into ``dest``, stopping at the first byte over an entry's allowance or the budget."""
    allowance, budget = extraction_budget(zf)
    base = dest.resolve()
    written = 0
    for info in zf.infolist():
        if info.is_dir():
            continue
        target = (base / info.filename).resolve()
        if not target.is_relative_to(base):  # belt and braces after check_entries
            raise BundleError(f"entry {info.filename!r} would be written outside the bundle folder")
        limit = min(allowance.get(info.filename, SMALL_FILE_BYTES), budget - written)
        if info.file_size > limit:
            raise BundleError(f"entry {info.filename!r} declares {info.file_size} bytes; its cards allow {limit}")
        target.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        # ZipExtFile stops at the declared size; the running count guards the budget all the same
        with zf.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(CHUNK):
                n += len(chunk)
                if n > limit:
                    dst.close()
                    target.unlink(missing_ok=True)
                    raise BundleError(f"entry {info.filename!r} expands past {limit} bytes; extraction stopped")
                dst.write(chunk)
        written += n

