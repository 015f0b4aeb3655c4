"""What every family's evaluator shares: reading the eval split, and ground truth from a card.

:class:`BaseEvaluator` gives an evaluator the two card-driven paths every family needs:

- ``eval_split(card, root, limit)``: the split ``hcbench run`` evaluates on, read by the dataset
  card's reader (the adapter's ``build_data(..., "eval")`` calls it, and so does submission
  re-scoring, so both see the same samples in the same order);
- ``score_files(pred, gt, card)`` with a card: ``gt`` is the dataset root (or the eval split's
  annotation file in its place under that root); the split is read as above and scored with
  ``score`` — the exact code ``run`` used.

A family overrides ``score_files`` to add its file-level formats (a COCO keypoint json, an
odgt, label-map folders, bare arrays) for scoring without a card.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcbench.data.types import DataFormatError
from hcbench.errors import InputNotFoundError, UserError

if TYPE_CHECKING:  # pragma: no cover
    from hcbench.cards import TaskCard
    from hcbench.data.types import DatasetSplit


class ScoreUsageError(UserError, ValueError):
    """``hcbench score`` was given files or options that cannot go together."""


def jsonable(x: Any) -> Any:
    """Metrics ready for ``json.dumps``: numpy scalars to Python, NaN to None."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def exists(path: Path | str, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file ({what})")
    return path


def read_json(path: Path, what: str) -> Any:
    exists(path, what)
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, f"not valid JSON ({what}): {e}") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(path, f"not UTF-8 text ({what}): {e}") from None


def to_numpy(x: Any) -> np.ndarray:
    """A prediction value (numpy array, list, or CPU/GPU torch tensor) as a numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def relative_name(path: Path, root: Path | None) -> str:
    p = Path(path)
    return p.relative_to(root).as_posix() if root is not None and p.is_relative_to(root) else p.as_posix()


def split_root(split: DatasetSplit) -> Path | None:
    """The data root as seen from a split: the common folder above its annotation files/folders."""
    import os

    parents = [str(Path(f).parent) for f in split.files]
    return Path(os.path.commonpath(parents)) if parents else None


def root_from_gt(card: TaskCard, gt: Path) -> Path | None:
    """The dataset root ``gt`` names for ``card``'s eval split: ``gt`` itself when it is a folder
    holding the split's files, or the root above ``gt`` when ``gt`` is one of the split's files at
    its place (``<root>/annotations/person_keypoints_val2017.json``). None when neither."""
    from hcbench.data.cards import get_dataset_card

    spec = get_dataset_card(card.dataset.name).split(card.dataset.split)
    gt = Path(gt)
    if gt.is_dir():
        if any((gt / rel).exists() for rel in spec.files.values()):
            return gt
        return None
    for rel in spec.files.values():
        parts = Path(rel).parts
        if len(gt.parts) > len(parts) and gt.parts[-len(parts):] == parts:
            return Path(*gt.parts[:-len(parts)]) if len(gt.parts) > len(parts) else Path(".")
    return None


class BaseEvaluator:
    """Defaults for an :class:`~hcbench.families.base.Evaluator`; subclasses set ``family`` and
    ``predictions_suffix`` and implement ``write``, ``read`` and ``score``."""

    family: str = ""
    predictions_suffix: str = ".json"

    def eval_split(self, card: TaskCard, root: Path | None, limit: int | None = None) -> DatasetSplit:
        """The evaluation split of ``card`` under ``root``, as ``run`` and re-scoring read it; an empty
        split is an error (a score over nothing would read as a number)."""
        from hcbench.data.cards import read_split

        split = read_split(card.dataset.name, card.dataset.split, root, limit=limit)
        if not split.samples:
            raise DataFormatError(f"{card.dataset.name}/{split.split}", "the split is empty (no records to evaluate)")
        return split

    def split_from_gt(self, card: TaskCard, gt: Path | None) -> DatasetSplit:
        """``hcbench score --card``: the card's eval split read from the dataset root ``gt`` names
        (the whole split: a card's tier limits apply to runs, resolve the card to use them)."""
        if gt is None:
            raise ScoreUsageError(f"card {card.name!r}: pass --gt, the {card.dataset.name} dataset root "
                                  f"(the folder holding split {card.dataset.split!r})")
        root = root_from_gt(card, Path(exists(gt, "ground truth")))
        if root is None:
            from hcbench.data.cards import get_dataset_card

            files = get_dataset_card(card.dataset.name).split(card.dataset.split).files
            raise ScoreUsageError(f"{gt}: with --card {card.name}, --gt is the {card.dataset.name} dataset root or "
                                  f"one of its files of split {card.dataset.split!r} at its place "
                                  f"({', '.join(sorted(files.values()))})")
        return self.eval_split(card, root, limit=card.schedule.eval_limit)

    def read(self, path: Path, split: DatasetSplit, card: TaskCard) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None,
                    **options: Any) -> dict[str, Any]:
        """``hcbench score``: with ``card``, the run's predictions file against the card's split."""
        if card is None:
            raise ScoreUsageError(f"hcbench score {self.family}: pass --card NAME (the protocol to score with)")
        given = {k: v for k, v in options.items() if v not in (None, False)}
        if given:
            raise ScoreUsageError(f"card {card.name!r} fixes the protocol; drop {', '.join('--' + k.replace('_', '-') for k in given)}")
        split = self.split_from_gt(card, gt)
        return jsonable(self.score(exists(pred, "predictions"), split, card))


__all__ = ["BaseEvaluator", "ScoreUsageError", "jsonable", "exists", "read_json", "to_numpy", "relative_name",
           "split_root", "root_from_gt"]
