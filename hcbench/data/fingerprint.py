"""The dataset fingerprint a result record carries: which ground truth a run was scored on.

Used by ``hcbench run`` when it writes a record and by ``submit validate --rescore`` when it
checks that the local ground truth is the one the run used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hcbench.data.types import DatasetSplit
from hcbench.io import sha256_file


def dataset_fingerprint(split: DatasetSplit, root: Path) -> str:
    """``sha256:<hex>`` over the split's annotation files (name + content hash) and the list of
    samples it yielded (image paths relative to ``root``), so a changed annotation file or a
    different sample selection gives another fingerprint."""
    root = Path(root)
    h = hashlib.sha256()
    for f in sorted(Path(p) for p in split.files):
        h.update(f.name.encode())
        h.update(sha256_file(f).encode() if f.is_file() else b"-")
    for s in split.samples:
        img = Path(getattr(s, "image", ""))
        h.update(str(img.relative_to(root) if img.is_relative_to(root) else img.name).encode())
    return "sha256:" + h.hexdigest()
