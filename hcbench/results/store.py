"""Writing and reading result records on disk.

Layout: ``<root>/<suite>/<backbone>/<card>.json`` with predictions beside the record.
Writes are atomic (temp file in the same folder, fsync, ``os.replace``) so a crash never
leaves a half-written record and never clobbers a good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

from pydantic import ValidationError

from hcbench.results.schema import ResultRecord


class RecordError(ValueError):
    """A malformed result record; the message names the file."""


def backbone_dirname(spec: str) -> str:
    """A filesystem-safe folder name for a backbone spec (``timm:vit_tiny`` -> ``timm-vit_tiny``)."""
    kind, _, rest = spec.partition(":")
    if rest and kind == "file":
        rest = Path(rest).stem
    name = f"{kind}-{rest}" if rest else kind
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "backbone"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # mkstemp creates 0600; results are meant to be shared/served
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def record_path(root: str | Path, suite: str, backbone_spec: str, card: str) -> Path:
    return Path(root) / suite / backbone_dirname(backbone_spec) / f"{card}.json"


def write_record(path: str | Path, record: ResultRecord) -> Path:
    path = Path(path)
    atomic_write_json(path, record.to_json_dict())
    return path


def read_record(path: str | Path) -> ResultRecord:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: not a readable JSON record: {e}") from e
    if not isinstance(data, dict) or data.get("schema") != "hcbench.result/1":
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise RecordError(f"{path}: not an hcbench.result/1 record (schema={got!r})")
    try:
        return ResultRecord.model_validate(data)
    except ValidationError as e:
        raise RecordError(f"{path}: malformed result record:\n{e}") from e


def iter_record_files(root: str | Path) -> list[Path]:
    """Record files under ``root`` (predictions and other JSON beside them are skipped)."""
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(
        p for p in root.rglob("*.json")
        if not p.name.startswith(".") and ".predictions." not in p.name and not p.name.endswith(".config.json")
        and p.name != "manifest.json"
    )


def load_records(root: str | Path, suite: str | None = None) -> list[tuple[Path, ResultRecord]]:
    """Every record under ``root`` (optionally only ``root/<suite>``); malformed ones raise."""
    root = Path(root)
    base = root / suite if suite and (root / suite).is_dir() else root
    out = []
    for p in iter_record_files(base):
        rec = read_record(p)
        if suite and base == root and p.relative_to(root).parts[0] != suite:
            continue
        out.append((p, rec))
    return out


def records_frame(root: str | Path, suite: str | None = None):
    """Records as a pandas DataFrame: one row per (record, metric)."""
    import pandas as pd

    rows = []
    for path, rec in load_records(root, suite):
        for metric, value in rec.metrics.items():
            rows.append({
                "file": str(path), "suite": path.relative_to(root).parts[0] if path.is_relative_to(root) else "",
                "backbone": rec.backbone.spec, "params": rec.backbone.params, "gflops": rec.backbone.gflops,
                "card": rec.card.name, "family": rec.card.family, "tier": rec.card.tier,
                "card_sha256": rec.card.sha256, "seed": rec.run.seed, "metric": metric, "value": value,
                "primary": metric == rec.primary, "status": rec.status,
            })
        if not rec.metrics:
            rows.append({"file": str(path), "backbone": rec.backbone.spec, "card": rec.card.name,
                         "family": rec.card.family, "tier": rec.card.tier, "seed": rec.run.seed,
                         "metric": rec.primary, "value": float("nan"), "primary": True, "status": rec.status})
    columns = ["file", "suite", "backbone", "params", "gflops", "card", "family", "tier", "card_sha256",
               "seed", "metric", "value", "primary", "status"]
    return pd.DataFrame(rows, columns=columns)
