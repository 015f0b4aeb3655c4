"""The bottom file layer: atomic writes and file hashing. Every hcbench package may import it;
it imports nothing from hcbench.

An atomic write goes to a temp file in the target's folder (``.<name>.<random>.tmp``), is
fsynced and renamed over the target, so a reader never sees half a file and a crash never
clobbers a good one. A process killed between the two steps leaves the temp file behind:
:func:`remove_stale_temps` deletes those of one target when its owner starts again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


@contextlib.contextmanager
def atomic_output(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside ``path`` for a writer that needs a file name (a zip, a codec); renamed
    over ``path`` when the block ends without an error, deleted otherwise. The caller's writer
    should flush and close the file inside the block."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # mkstemp creates 0600; results are meant to be shared/served
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def stale_temps(path: str | Path) -> list[Path]:
    """Temp files that an interrupted :func:`atomic_write_bytes` of ``path`` left behind."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = _temp_prefix(path)
    return sorted(p for p in path.parent.iterdir()
                  if p.name.startswith(prefix) and ".tmp" in p.name[len(prefix):] and p.is_file())


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temp files of interrupted writes of ``path``; returns what was removed.

    Only call it where no other process is writing ``path`` at the same time (the owner of a
    run's folder, on start): a live writer's temp file looks the same.
    """
    removed = []
    for p in stale_temps(path):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


__all__ = ["atomic_output", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "remove_stale_temps", "sha256_file",
           "stale_temps"]
