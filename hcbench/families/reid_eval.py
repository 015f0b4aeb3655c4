"""The ReID evaluator. Predictions file (``.npz``, also the ``hcbench score reid`` format):
``query_feats`` (Q x D float32), ``gallery_feats`` (G x D), ``query_pids``, ``gallery_pids``,
``query_camids``, ``gallery_camids`` (int64) and ``query_names`` / ``gallery_names`` (image paths
relative to the data root). Scored under the Market-1501 protocol
(:func:`hcbench.metrics.reid.evaluate_reid`: same pid + camera gallery images removed).

``eval_limit`` keeps the first N queries, every gallery image of their identities and the first N
other gallery images, so a smoke run still has a true match for each query.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.cards import TaskCard
from hcbench.data.types import DataFormatError, DatasetSplit
from hcbench.families.evaluator import (
    BaseEvaluator,
    ScoreUsageError,
    exists,
    jsonable,
    relative_name,
    split_root,
    to_numpy,
)

KEYS = ("mAP", "rank1", "rank5", "rank10", "mINP")
ROLES = ("query", "gallery")
ARRAYS = tuple(f"{r}_{k}" for r in ROLES for k in ("feats", "pids", "camids"))


def limit_test_split(split: DatasetSplit, limit: int) -> DatasetSplit:
    """First ``limit`` queries + all gallery images of their pids + the first ``limit`` others."""
    queries = [s for s in split.samples if s.role == "query"][:limit]
    pids = {s.pid for s in queries}
    gallery = [s for s in split.samples if s.role == "gallery"]
    others = [s for s in gallery if s.pid not in pids][:limit]
    keep = {id(s) for s in others} | {id(s) for s in gallery if s.pid in pids}
    samples = queries + [s for s in gallery if id(s) in keep]
    return DatasetSplit(split.name, split.split, split.family, samples, split.meta, split.files, dict(split.extra))


def _check_finite(a: np.ndarray, path: Path, name: str) -> None:
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        bad = np.argwhere(~np.isfinite(a))[0]
        raise DataFormatError(path, f"NaN or inf in {name}", record=f"{name}{list(bad.tolist())}")


def read_features(path: Path) -> dict[str, np.ndarray]:
    """The six arrays of a features ``.npz``, validated (shapes, dtypes, finiteness)."""
    path = exists(path, "ReID features")
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(path, f"not a readable .npz: {e}") from None
    with npz:
        missing = [k for k in ARRAYS if k not in npz.files]
        if missing:
            raise DataFormatError(path, f"missing array(s) {missing}; the file has {sorted(npz.files)}")
        try:
            a = {k: npz[k] for k in ARRAYS}
        except ValueError as e:
            raise DataFormatError(path, f"unreadable array (object arrays are refused): {e}") from None
    for side in ROLES:
        f = a[f"{side}_feats"]
        if f.ndim != 2:
            raise DataFormatError(path, f"{side}_feats must be 2-D (num, dim), got shape {f.shape}")
        if not np.issubdtype(f.dtype, np.number):
            raise DataFormatError(path, f"{side}_feats has dtype {f.dtype}, expected numbers")
        _check_finite(f, path, f"{side}_feats")
        for what in ("pids", "camids"):
            ids = a[f"{side}_{what}"]
            if ids.shape != (f.shape[0],):
                raise DataFormatError(path, f"{side}_{what} has shape {ids.shape}, expected ({f.shape[0]},) "
                                      f"to match {side}_feats")
            if not np.issubdtype(ids.dtype, np.integer):
                raise DataFormatError(path, f"{side}_{what} has dtype {ids.dtype}, expected integers")
    if a["query_feats"].shape[1] != a["gallery_feats"].shape[1]:
        raise DataFormatError(path, f"query_feats dim {a['query_feats'].shape[1]} != gallery_feats dim "
                              f"{a['gallery_feats'].shape[1]}")
    return a


def check_against_split(a: dict[str, np.ndarray], path: Path, split: DatasetSplit) -> None:
    """The identities come from the split, never from the file alone."""
    for role in ROLES:
        want = np.array([s.pid for s in split.samples if s.role == role], np.int64)
        cams = np.array([s.camid for s in split.samples if s.role == role], np.int64)
        if len(want) != len(a[f"{role}_feats"]):
            raise DataFormatError(path, f"{len(a[f'{role}_feats'])} {role} features for {len(want)} "
                                  f"{role} images in {split.name}/{split.split}")
        if not (np.array_equal(want, a[f"{role}_pids"]) and np.array_equal(cams, a[f"{role}_camids"])):
            raise DataFormatError(path, f"{role} pids/camids differ from {split.name}/{split.split}")


def rank_metrics(a: dict[str, np.ndarray], path: Path, metric: str) -> dict[str, float]:
    from hcbench.metrics.reid import evaluate_reid

    try:
        m = evaluate_reid(a["query_feats"], a["gallery_feats"], a["query_pids"], a["gallery_pids"],
                          a["query_camids"], a["gallery_camids"], metric=metric)
    except ValueError as e:
        raise DataFormatError(path, str(e)) from None
    return {k: float(m[k]) for k in KEYS}


def eval_options(card: TaskCard) -> dict[str, Any]:
    from hcbench.families.reid import ReIDEvalOptions

    return ReIDEvalOptions.model_validate(dict(card.eval.options)).model_dump()


class ReIDEvaluator(BaseEvaluator):
    family = "reid"
    predictions_suffix = ".npz"

    def eval_split(self, card: TaskCard, root: Path | None, limit: int | None = None) -> DatasetSplit:
        split = super().eval_split(card, root, None)  # the limit keeps true matches, not the first N images
        if limit is not None:
            split = limit_test_split(split, limit)
        roles = {s.role for s in split.samples}
        if not {"query", "gallery"} <= roles:
            raise DataFormatError(f"{card.dataset.name}/{split.split}", "an evaluation split needs query and "
                                  f"gallery images, found roles {sorted(roles)}")
        return split

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path:
        from hcbench.io import atomic_write_bytes

        by_index = {int(p["index"]): p for p in predictions}
        root = split_root(split)
        arrays: dict[str, np.ndarray] = {}
        for role in ROLES:
            idx = [i for i, s in enumerate(split.samples) if s.role == role]
            missing = [i for i in idx if i not in by_index]
            if missing:
                raise ValueError(f"{card.name}: no prediction for {len(missing)} {role} images "
                                 f"(first: {split.samples[missing[0]].image})")
            arrays[f"{role}_feats"] = np.stack([to_numpy(by_index[i]["feat"]) for i in idx]).astype(np.float32)
            arrays[f"{role}_pids"] = np.array([split.samples[i].pid for i in idx], np.int64)
            arrays[f"{role}_camids"] = np.array([split.samples[i].camid for i in idx], np.int64)
            arrays[f"{role}_names"] = np.array([relative_name(split.samples[i].image, root) for i in idx], dtype=str)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    def read(self, path: Path, split: DatasetSplit | None = None, card: TaskCard | None = None) -> dict[str, np.ndarray]:
        a = read_features(Path(path))
        if split is not None:
            check_against_split(a, Path(path), split)
        return a

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]:
        return rank_metrics(self.read(path, split, card), Path(path), eval_options(card)["metric"])

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None, *,
                    metric: str | None = None, **unknown: Any) -> dict[str, Any]:
        """A features ``.npz`` (ids inside it). With ``card``: its distance; with ``gt`` (the dataset
        root) too, the ids are checked against the card's eval split, exactly as re-scoring does."""
        if unknown:
            raise ScoreUsageError(f"hcbench score reid: unknown option(s) {sorted(unknown)}")
        if card is None:
            return jsonable(rank_metrics(read_features(Path(pred)), Path(pred), metric or "cosine"))
        if metric is not None:
            raise ScoreUsageError(f"card {card.name!r} fixes the distance; drop --metric")
        if gt is None:
            return jsonable(rank_metrics(read_features(Path(pred)), Path(pred), eval_options(card)["metric"]))
        return jsonable(self.score(exists(pred, "predictions"), self.split_from_gt(card, gt), card))
