"""Small helpers shared by the non-pose readers: card roles -> paths, list files, limits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from hcbench.data.cards import DatasetCard, DatasetCardError
from hcbench.data.types import DataFormatError


def role_paths(root: Path, card: DatasetCard, split: str, required: Sequence[str],
               optional: Sequence[str] = ()) -> dict[str, Path]:
    """Absolute paths of the file roles a reader needs for ``split``; a missing role is a card error."""
    files = card.split(split).files
    missing = [r for r in required if r not in files]
    if missing:
        raise DatasetCardError(
            f"dataset card {card.name!r}, split {split!r}: the {card.format!r} reader needs file role(s) "
            f"{missing}; the card lists {sorted(files)}")
    return {r: Path(root) / files[r] for r in (*required, *optional) if r in files}


def require_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing ({what})")
    return path


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) for each non-blank line of a text file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text: {e}") from None
    for i, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield i, line


def take(items: list, limit: int | None) -> list:
    return items if limit is None else items[: max(0, limit)]
