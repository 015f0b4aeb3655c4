"""Writing and reading result records on disk.

Layout: ``<root>/<suite>/<backbone>/<card>[.<tier>][.s<seed>].json``, the run's effective
configuration (``<stem>.config.json``) and predictions (``<stem>.predictions.<ext>``) beside it.
The tier is left out when it is ``full`` and the seed when it is 0; a ``file:`` backbone's folder
carries the first 8 hex digits of its checkpoint's sha256 (``file-model-1a2b3c4d``), so two
checkpoints with one file name, or a checkpoint replaced in place, never share a record. Every
field of a run's identity that can differ within one results folder is in the path, except the
card's sha256: a changed card supersedes its old record (a stale record is re-run in place).
Writes are atomic (:mod:`hcbench.io`: temp file in the same folder, fsync, ``os.replace``) so a
crash never leaves a half-written record and never clobbers a good one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import ValidationError

from hcbench.errors import UserError
from hcbench.io import atomic_write_json
from hcbench.results.schema import ResultRecord


class RecordError(UserError, ValueError):
    """A malformed result record; the message names the file."""


def backbone_dirname(spec: str, checkpoint_sha256: str | None = None) -> str:
    """A filesystem-safe folder name for a backbone spec (``timm:vit_tiny`` -> ``timm-vit_tiny``).

    A ``file:`` spec is named by its file's stem plus the checkpoint's short sha256 when known
    (``file:a/model.safetensors`` -> ``file-model-1a2b3c4d``): the stem alone is not an identity.
    """
    kind, _, rest = spec.partition(":")
    if rest and kind == "file":
        rest = Path(rest).stem + (f"-{checkpoint_sha256[:8]}" if checkpoint_sha256 else "")
    name = f"{kind}-{rest}" if rest else kind
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "backbone"


def record_stem(card: str, tier: str = "full", seed: int = 0) -> str:
    """``<card>[.<tier>][.s<seed>]``: the name shared by a run's record, config and predictions."""
    return card + ("" if tier == "full" else f".{tier}") + ("" if seed == 0 else f".s{seed}")


def record_path(root: str | Path, suite: str, backbone_spec: str, card: str, *, tier: str = "full", seed: int = 0,
                checkpoint_sha256: str | None = None) -> Path:
    """Where the record of (backbone, card, tier, seed) goes; see the module doc for the layout."""
    return (Path(root) / suite / backbone_dirname(backbone_spec, checkpoint_sha256)
            / f"{record_stem(card, tier, seed)}.json")


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
