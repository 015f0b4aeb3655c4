"""Leaderboard submission bundles: ``hcbench submit pack`` and ``hcbench submit validate``.

A bundle is a zip holding result records, the predictions file each record names (beside it),
the run's ``<card>.config.json`` where present, and ``manifest.json``: the sha256 of every file, the hcbench version, the sha256 of every
protocol card the records used and the creation time. Validation checks the records' schema
and metric ranges, that every card sha256 is the current resolved card for its tier, that
the manifest and the files agree exactly and, with ``rescore``, recomputes every metric from
the shipped predictions against local ground truth.

A bundle is untrusted input (``hcbench.results.bundle_io``). Every entry is checked *before*
anything is extracted (no absolute paths, ``..``, symlinks, duplicate names, encrypted entries,
zip-bomb compression ratios, and no pickle-based file types); extraction goes into a fresh
temporary folder only, with a byte budget sized from the records' cards, and nothing is ever
unpickled: records are JSON, arrays are read with ``np.load(allow_pickle=False)``.
"""

from __future__ import annotations

import json
import math
import shutil
import stat
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from hcbench import __version__
from hcbench.io import atomic_output, sha256_file
from hcbench.results.bundle_io import (  # noqa: F401  (BundleError re-exported)
    ALLOWED_SUFFIXES,
    BundleError,
    check_entries,
    extract,
)
from hcbench.results.provenance import provenance_problems
from hcbench.results.schema import ResultRecord
from hcbench.results.store import RecordError, iter_record_files, load_records, read_record

BUNDLE_FORMAT = "hcbench.bundle/1"
MANIFEST = "manifest.json"
RESCORE_ATOL = 1e-6  # metrics are recomputed from the same file; only float noise may differ


# --------------------------------------------------------------------------- pack
def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _bundle_files(results_dir: Path, pairs: list[tuple[Path, ResultRecord]]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path, rec in pairs:
        files[path.relative_to(results_dir).as_posix()] = path
        config = path.with_name(f"{path.stem}.config.json")  # the run's effective configuration, for provenance
        if config.is_file():
            files[config.relative_to(results_dir).as_posix()] = config
        if rec.predictions is None:
            continue
        name = rec.predictions.file
        if PurePosixPath(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{path}: predictions.file {name!r} must be a file name beside the record")
        pred = path.parent / name
        if not pred.is_file():
            raise BundleError(f"{path}: its predictions file {pred} is missing")
        if pred.suffix.lower() not in ALLOWED_SUFFIXES:
            raise BundleError(f"{pred}: file type {pred.suffix!r} cannot go into a bundle "
                              f"(allowed: {', '.join(sorted(ALLOWED_SUFFIXES))})")
        if sha256_file(pred) != rec.predictions.sha256:
            raise BundleError(f"{path}: predictions file {pred.name} does not match the sha256 in the record")
        files[pred.relative_to(results_dir).as_posix()] = pred
    return files


def pack(results_dir: str | Path, out: str | Path, suite: str | None = None) -> Path:
    """Pack the records under ``results_dir`` (or ``results_dir/<suite>``) into the zip ``out``."""
    results_dir, out = Path(results_dir), Path(out)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    pairs = load_records(results_dir, suite)  # malformed records raise, naming the file
    if not pairs:
        raise BundleError(f"no result records under {results_dir}" + (f" for suite {suite!r}" if suite else ""))
    files = _bundle_files(results_dir, pairs)
    cards = sorted({(r.card.name, r.card.version, r.card.tier, r.card.sha256) for _, r in pairs})
    manifest = {
        "format": BUNDLE_FORMAT,
        "hcbench": __version__,
        "created": _utc_now(),
        "suite": suite,
        "records": len(pairs),
        "cards": [{"name": n, "version": v, "tier": t, "sha256": s} for n, v, t, s in cards],
        "files": {arc: sha256_file(p) for arc, p in sorted(files.items())},
    }
    with atomic_output(out) as tmp:  # a half-written bundle never takes the target name
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            _add(zf, MANIFEST, json.dumps(manifest, indent=2).encode())
            for arc, path in sorted(files.items()):
                _add(zf, arc, path)
    return out


def _add(zf: zipfile.ZipFile, arc: str, data: bytes | Path) -> None:
    info = zipfile.ZipInfo(arc, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: same inputs, same bytes
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    if isinstance(data, bytes):
        zf.writestr(info, data)
        return
    with open(data, "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _check_arrays(path: Path, rel: str) -> list[str]:
    import numpy as np

    try:
        data = np.load(path, allow_pickle=False)  # npz: a lazy archive, read every member; npy: an array
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                for key in data.files:
                    data[key]
        return []
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            return [f"{rel}: holds pickled object arrays, refused (arrays must be plain numeric/str dtypes)"]
        return [f"{rel}: unreadable numpy file: {e}"]
    except Exception as e:  # a corrupt array file is a problem to report, not a crash
        return [f"{rel}: unreadable numpy file: {type(e).__name__}: {e}"]


# --------------------------------------------------------------------------- validate
def validate(bundle: str | Path, rescore: bool = False, root: Path | None = None) -> list[str]:
    """Every problem found in ``bundle`` (empty list: valid). ``root``: ground truth for ``rescore``."""
    bundle = Path(bundle)
    if not bundle.is_file():
        return [f"{bundle}: no such bundle file"]
    try:
        zf = zipfile.ZipFile(bundle)
    except (zipfile.BadZipFile, OSError) as e:
        return [f"{bundle}: not a readable zip archive: {e}"]
    with zf:
        problems = check_entries(zf.infolist())
        if problems:
            return [f"{bundle.name}: refused before extraction: {p}" for p in problems]
        with tempfile.TemporaryDirectory(prefix="hcbench-bundle-") as tmp:
            try:
                extract(zf, Path(tmp))
            except (BundleError, zipfile.BadZipFile, OSError, EOFError) as e:
                return [f"{bundle.name}: cannot extract: {e}"]
            return [f"{bundle.name}: {p}" for p in _validate_tree(Path(tmp), rescore, root)]


def _read_manifest(tree: Path) -> tuple[dict | None, list[str]]:
    path = tree / MANIFEST
    if not path.is_file():
        return None, [f"{MANIFEST} is missing"]
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, [f"{MANIFEST}: not valid JSON: {e}"]
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        return None, [f"{MANIFEST}: not an {BUNDLE_FORMAT} manifest (format={got!r})"]
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None, [f"{MANIFEST}: 'files' must map each file to its sha256"]
    return manifest, []


def _check_manifest(tree: Path, manifest: dict) -> list[str]:
    problems = []
    present = {p.relative_to(tree).as_posix(): p for p in tree.rglob("*") if p.is_file()}
    present.pop(MANIFEST, None)
    listed: dict[str, str] = manifest["files"]
    for rel in sorted(set(listed) - set(present)):
        problems.append(f"{rel}: listed in the manifest but not in the bundle")
    for rel in sorted(set(present) - set(listed)):
        problems.append(f"{rel}: in the bundle but not listed in the manifest")
    for rel in sorted(set(listed) & set(present)):
        if sha256_file(present[rel]) != listed[rel]:
            problems.append(f"{rel}: sha256 differs from the manifest (changed after packing)")
    return problems


def _card_problem(rel: str, rec: ResultRecord, manifest_cards: dict[tuple[str, str], str]):
    """(resolved current card or None, problem or None) for a record's card identity."""
    from hcbench.cards import CardError, get_card, resolve

    name, tier = rec.card.name, rec.card.tier
    try:
        card = resolve(get_card(name), tier)
    except (CardError, ValueError) as e:
        return None, f"{rel}: card {name!r} is not known to this hcbench: {e}"
    listed = manifest_cards.get((name, tier))
    if listed is not None and listed != rec.card.sha256:
        return None, f"{rel}: card {name!r} ({tier}) sha256 differs between the record and the manifest"
    if rec.card.sha256 != card.sha256:
        return None, (f"{rel}: stale card {name!r}: record has sha256 {rec.card.sha256[:12]}… (version "
                      f"{rec.card.version}), the current {tier} card is {card.sha256[:12]}… (version {card.version})")
    if rec.card.family != card.family:
        return None, f"{rel}: card {name!r} is a {card.family} card, the record says {rec.card.family}"
    if rec.status == "ok" and rec.primary != card.eval.primary:
        return None, f"{rel}: card {name!r} primary metric is {card.eval.primary!r}, the record says {rec.primary!r}"
    return card, None


def _metric_problems(rel: str, rec: ResultRecord) -> list[str]:
    out = []
    for m, v in rec.metrics.items():
        if v is None:  # a metric undefined on the split is stored as null
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0.0 <= v <= 1.0:
            out.append(f"{rel}: card {rec.card.name!r} metric {m!r}={v!r} is not a fraction in [0, 1]")
    return out


def _validate_tree(tree: Path, rescore: bool, root: Path | None) -> list[str]:
    manifest, problems = _read_manifest(tree)
    if manifest is None:
        return problems
    problems += _check_manifest(tree, manifest)
    for p in sorted(tree.rglob("*")):
        if p.is_file() and p.suffix.lower() in (".npz", ".npy"):
            problems += _check_arrays(p, p.relative_to(tree).as_posix())
    manifest_cards = {}
    for c in manifest.get("cards") or []:
        if isinstance(c, dict) and {"name", "tier", "sha256"} <= set(c):
            manifest_cards[(c["name"], c["tier"])] = c["sha256"]
    record_files = iter_record_files(tree)
    if not record_files:
        problems.append("no result records in the bundle")
    to_rescore = []
    read_ok = []
    for path in record_files:
        rel = path.relative_to(tree).as_posix()
        try:
            rec = read_record(path)
        except RecordError as e:
            problems.append(str(e).replace(str(path), rel))
            continue
        read_ok.append((rel, path, rec))
        problems += _metric_problems(rel, rec)
        card, problem = _card_problem(rel, rec, manifest_cards)
        if problem:
            problems.append(problem)
        if rec.status != "ok":
            continue
        if rec.predictions is None:
            problems.append(f"{rel}: card {rec.card.name!r}: no predictions shipped, the result cannot be re-scored")
            continue
        name = rec.predictions.file
        pred = path.parent / name
        if PurePosixPath(name).name != name or not pred.is_file():
            problems.append(f"{rel}: card {rec.card.name!r}: predictions file {name!r} is not in the bundle beside it")
            continue
        if sha256_file(pred) != rec.predictions.sha256:
            problems.append(f"{rel}: card {rec.card.name!r}: predictions file {name} does not match the record's sha256")
            continue
        if card is not None:
            to_rescore.append((rel, rec, card, pred))
    problems += provenance_problems(read_ok)
    if rescore:
        for rel, rec, card, pred in to_rescore:
            problems += rescore_record(rel, rec, card, pred, root)
    return problems


# --------------------------------------------------------------------------- rescore
def score_predictions(card, pred: Path, root: Path | None) -> tuple[dict[str, float], str | None]:
    """(metrics, local dataset fingerprint) of a predictions file against local ground truth.

    The eval split is built exactly as ``hcbench run`` builds it (``adapter.build_data`` with the
    tier's ``eval_limit``), so the same predictions give the same numbers by construction.
    """
    from hcbench.adapters import get_adapter
    from hcbench.data.cards import dataset_root
    from hcbench.data.fingerprint import dataset_fingerprint

    adapter = get_adapter(card.family)
    data = dataset_root(card.dataset.name, root)
    _, split = adapter.build_data(card, data, "eval", limit=card.schedule.eval_limit)
    return adapter.score(pred, split, card), dataset_fingerprint(split, data)


def rescore_record(rel: str, rec: ResultRecord, card, pred: Path, root: Path | None) -> list[str]:
    """Problems found by recomputing ``rec``'s metrics from ``pred`` (``card``: its resolved card)."""
    name = rec.card.name
    try:
        fresh, fingerprint = score_predictions(card, pred, root)
    except Exception as e:  # missing ground truth, a broken file: report it against the card
        return [f"{rel}: card {name!r}: re-scoring failed: {type(e).__name__}: {e}"]
    recorded = rec.dataset.fingerprint
    if fingerprint and recorded.startswith("sha256:") and fingerprint != recorded:
        return [f"{rel}: card {name!r}: the local ground truth of {rec.dataset.name}/{rec.dataset.split} differs "
                f"from the one the run used (fingerprint {fingerprint[7:19]}… vs {recorded[7:19]}…); not re-scored"]
    out = []
    for m, v in rec.metrics.items():
        if m not in fresh:
            out.append(f"{rel}: card {name!r} metric {m!r}: not produced by re-scoring the predictions")
        elif v is None or fresh[m] is None or not 0.0 <= float(fresh[m]) <= 1.0:
            undefined = fresh[m] is None or not 0.0 <= float(fresh[m]) <= 1.0 or float(fresh[m]) != float(fresh[m])
            if (v is None) != undefined:
                out.append(f"{rel}: card {name!r} metric {m!r}: recorded {v!r}, re-scored {fresh[m]!r}")
        elif not math.isclose(v, float(fresh[m]), rel_tol=0.0, abs_tol=RESCORE_ATOL):
            out.append(f"{rel}: card {name!r} metric {m!r}: recorded {v:.6f}, re-scored {float(fresh[m]):.6f} "
                       "from the shipped predictions")
    return out
