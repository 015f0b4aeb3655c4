"""``hcbench clean``: find (and, when asked, remove) old training checkpoints under a work folder.

A run keeps its checkpoints in ``<work-dir>/<suite>/<backbone>/<card>-<tier>-s<seed>-<hex>/``
(``hcbench pretrain``: ``<work-dir>/pretrain/<name>/``) so that it can resume; once its record
is written they only take disk space. Result records never live there: a folder holding a
result record (or named ``results``) is refused, so cleaning can never touch results.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from hcbench.errors import ConfigError, InputNotFoundError

CHECKPOINT_PATTERNS = ("*.pt", "*.pt.tmp*", "*.pth")


@dataclass(frozen=True)
class RunFolder:
    path: Path
    bytes: int
    modified: float  # newest file's mtime (seconds since the epoch)

    @property
    def age_days(self) -> float:
        return max(0.0, (time.time() - self.modified) / 86400)


def _holds_checkpoint(folder: Path) -> bool:
    return any(p.is_file() for pat in CHECKPOINT_PATTERNS for p in folder.glob(pat))


def _is_record(path: Path) -> bool:
    if path.suffix != ".json" or path.name.endswith((".config.json", ".predictions.json")):
        return False
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(200)
    except OSError:
        return False
    return '"hcbench.result/' in head


def run_folders(work_dir: str | Path, older_than_days: float = 0.0) -> list[RunFolder]:
    """Every folder under ``work_dir`` that directly holds a checkpoint and whose newest file is
    at least ``older_than_days`` old, largest first."""
    work = Path(work_dir)
    if not work.is_dir():
        raise InputNotFoundError(f"{work}: no such work folder (hcbench run --work-dir; default runs/)")
    if work.resolve().name == "results" or any(_is_record(p) for p in work.rglob("*.json")):
        raise ConfigError(f"{work}: holds result records; `hcbench clean` removes checkpoints from a "
                          "work folder (--work-dir), never results")
    out = []
    for folder in sorted({p.parent for pat in CHECKPOINT_PATTERNS for p in work.rglob(pat)}):
        if not _holds_checkpoint(folder):
            continue
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        newest = max((p.stat().st_mtime for p in files), default=folder.stat().st_mtime)
        found = RunFolder(folder, size, newest)
        if found.age_days >= older_than_days:
            out.append(found)
    return sorted(out, key=lambda r: (-r.bytes, str(r.path)))


def remove_run_folders(folders: list[RunFolder]) -> int:
    """Delete the folders; returns the bytes freed."""
    freed = 0
    for f in folders:
        shutil.rmtree(f.path)
        freed += f.bytes
    return freed


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


__all__ = ["RunFolder", "run_folders", "remove_run_folders", "human_size"]
