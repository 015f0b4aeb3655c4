"""The text-to-image retrieval evaluator: the predictions file (caption and image embeddings) and
its scoring (Rank-1/5/10, mAP, mINP by :func:`hcbench.metrics.t2i.evaluate_t2i`).

Predictions file (``.npz``, also the ``hcbench score t2i --pred`` format): ``text_feats`` (T x D
float32), ``image_feats`` (I x D), ``text_pids``, ``image_pids`` (int64), and for reading by eye
``image_names`` (image paths relative to the data root), ``text_image`` (index of the image each
caption describes) and ``captions``. Only the four first arrays are required to score; with a
split (``run``, re-scoring, ``score --card``) the identities must equal the split's, in order.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.errors import UserError
from hcbench.families.evaluator import (
    BaseEvaluator,
    ScoreUsageError,
    exists,
    jsonable,
    relative_name,
    split_root,
    to_numpy,
)

REQUIRED = ("text_feats", "image_feats", "text_pids", "image_pids")


class FeaturesMismatchError(UserError, ValueError):
    """A predictions file whose images/captions are not those of the split it is scored against."""


def split_arrays(split: Any) -> dict[str, np.ndarray]:
    """The identities (and names) a predictions file of ``split`` must carry, in file order."""
    samples = split.samples
    return {"image_pids": np.array([s.pid for s in samples], np.int64),
            "text_pids": np.array([s.pid for s in samples for _ in s.captions], np.int64),
            "text_image": np.array([i for i, s in enumerate(samples) for _ in s.captions], np.int64)}


def read_feats(path: Path) -> dict[str, np.ndarray]:
    from hcbench.data.types import DataFormatError

    exists(path, "predictions")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise DataFormatError(path, f"not a readable .npz of features: {e}") from None
    absent = [k for k in REQUIRED if k not in data]
    if absent:
        raise DataFormatError(path, f"predictions file lacks {absent} (needs {', '.join(REQUIRED)})")
    return data


class T2IEvaluator(BaseEvaluator):
    family = "t2i"
    predictions_suffix = ".npz"

    def write(self, predictions: list[dict[str, Any]], split: Any, card: Any, path: Path) -> Path:
        from hcbench.io import atomic_write_bytes

        by_index = {int(p["index"]): p for p in predictions}
        n_img = len(split.samples)
        ref = split_arrays(split)
        n_txt = len(ref["text_pids"])
        missing = [i for i in range(n_img + n_txt) if i not in by_index]
        if missing:
            what = "image" if missing[0] < n_img else "caption"
            raise ValueError(f"{card.name}: no prediction for {len(missing)} of {n_img} images + {n_txt} captions "
                             f"(first: {what} item {missing[0]})")

        def feats(lo: int, hi: int) -> np.ndarray:
            return np.stack([to_numpy(by_index[i]["feat"]).astype(np.float32) for i in range(lo, hi)])

        root = split_root(split)
        arrays = {"image_feats": feats(0, n_img), "text_feats": feats(n_img, n_img + n_txt), **ref,
                  "image_names": np.array([relative_name(s.image, root) for s in split.samples], dtype=str),
                  "captions": np.array([c for s in split.samples for c in s.captions], dtype=str)}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    def read(self, path: Path, split: Any, card: Any) -> dict[str, np.ndarray]:
        """The arrays of ``path``, checked against ``split``: counts and identities in order."""
        data = read_feats(Path(path))
        ref = split_arrays(split)
        for key, what in (("image_pids", "images"), ("text_pids", "captions")):
            got = np.asarray(data[key])
            if got.shape != ref[key].shape:
                raise FeaturesMismatchError(f"{path}: {got.size} {what} for {ref[key].size} {what} in {split.name}/{split.split}")
            if not np.array_equal(got.astype(np.int64), ref[key]):
                raise FeaturesMismatchError(f"{path}: {key} differ from {split.name}/{split.split} "
                                 f"(first at position {int(np.flatnonzero(got != ref[key])[0])})")
        return data

    def score(self, path: Path, split: Any, card: Any) -> dict[str, Any]:
        from hcbench.metrics.t2i import METRIC_KEYS, evaluate_t2i

        d = self.read(path, split, card)
        m = evaluate_t2i(d["text_feats"], d["image_feats"], d["text_pids"], d["image_pids"])
        return {k: float(m[k]) for k in METRIC_KEYS}

    def score_files(self, pred: Path, gt: Path | None = None, card: Any = None, **options: Any) -> dict[str, Any]:
        """With ``card``: against the card's split under the dataset root ``gt``. Without: the
        features file alone; when ``gt`` is an annotation file of a T2I format (``reid_raw.json``,
        ``ICFG-PEDES.json``, ``data_captions.json``), its ``split`` records' identities must match."""
        if card is not None:
            return super().score_files(pred, gt, card, **options)
        from hcbench.metrics.t2i import METRIC_KEYS, evaluate_t2i

        d = read_feats(Path(pred))
        if gt is not None:
            self._check_annotations(Path(pred), Path(gt), d, options.get("split") or "test")
        elif options.get("split"):
            raise ScoreUsageError("--split selects the records of the --gt annotation file; pass --gt too")
        m = evaluate_t2i(d["text_feats"], d["image_feats"], d["text_pids"], d["image_pids"])
        out = {k: m[k] for k in METRIC_KEYS}
        out["num_queries"] = m["num_queries"]
        return jsonable(out)

    @staticmethod
    def _check_annotations(pred: Path, gt: Path, d: dict[str, np.ndarray], split: str) -> None:
        from hcbench.data.readers.t2i import FORMATS, load_annotations, parse_record

        fmt = next((f for f in FORMATS.values() if f.annotation_file == exists(gt, "ground truth").name), None)
        if fmt is None:
            names = ", ".join(f.annotation_file for f in FORMATS.values())
            raise ScoreUsageError(f"{gt}: without --card, --gt is a text-to-image annotation file ({names})")
        recs = [parse_record(r, i, fmt, gt) for i, r in enumerate(load_annotations(gt))]
        recs = [r for r in recs if r[0] == split]
        if not recs:
            raise ScoreUsageError(f"{gt}: no records of split {split!r}")
        image_pids = np.array([r[1] for r in recs], np.int64)
        text_pids = np.array([r[1] for r in recs for _ in r[3]], np.int64)
        for key, ref in (("image_pids", image_pids), ("text_pids", text_pids)):
            got = np.asarray(d[key]).astype(np.int64)
            if got.shape != ref.shape or not np.array_equal(got, ref):
                raise FeaturesMismatchError(f"{pred}: {key} ({got.size}) do not match the {split!r} records of {gt} "
                                 f"({ref.size}, in file order)")
