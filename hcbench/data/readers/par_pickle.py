"""Rethinking-of-PAR dataset pickles (PETA-zs, RAP-zs) read without running pickle code.

Jia et al., "Rethinking of Pedestrian Attribute Recognition: A Reliable Evaluation under
Zero-Shot Pedestrian Identity Setting" (2021; valencebond/Rethinking_of_PAR) publish their
identity-disjoint partitions as ``dataset_zs_run0.pkl``: an ``EasyDict`` holding ``image_name``
(list of N file names), ``label`` (N x A uint8 array; 2 = uncertain, read as 0 like the release),
``attr_name`` (A names), ``label_idx.eval`` (the evaluated columns, in the release's group order;
absent: all columns), ``partition`` (``train``/``val``/``test``/``trainval`` -> int arrays of rows;
a list of arrays holds several random partitions, the first is used as the release does) and
bookkeeping (``root``, ``weight_*``, ``description``) that is ignored.

A pickle is a program, so it is never given to :func:`pickle.load`. :class:`SafeUnpickler`
resolves only plain containers and numpy's array/dtype/scalar reconstruction; ``EasyDict`` (a
``dict`` subclass that only mirrors its items as attributes) is read as a plain ``dict``. Any
other global -- a class, ``os.system``, ``builtins.eval`` -- is refused before anything is
called, with an error naming the file and the global. ``hcbench data convert par-pickle`` writes
the same content as JSON (:func:`convert_to_json`), which the reader takes too.

Card file roles (format ``par_pickle``): ``annotation`` (the ``.pkl`` or converted ``.json``) and
``images`` (the folder ``image_name`` is relative to). Splits: ``train``, ``val``, ``test``,
``trainval``.
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.cards import DatasetCard
from hcbench.data.readers._common import require_file, role_paths
from hcbench.data.types import AttributeMeta, AttributeSample, DataFormatError, DatasetSplit
from hcbench.registry import DATASETS

SPLITS = ("train", "val", "test", "trainval")


class UnsafePickleError(DataFormatError):
    """A pickle that names a global outside the allow-list (it would run code when loaded)."""


class _AttrDict(dict):
    """Stand-in for ``easydict.EasyDict``: a dict; the BUILD state (its ``__dict__``, a mirror of
    the items) lands in the instance ``__dict__`` and is ignored."""


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's pickle reconstruction entry points under their numpy 1.x and 2.x module names,
    resolved here (never by importing a module the pickle names)."""
    try:
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nu
    except ImportError:  # numpy < 2
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
        from numpy.core import numeric as nu  # type: ignore[no-redef]
    out: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = ma._reconstruct
        out[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        out[(mod, "_frombuffer")] = nu._frombuffer
    out[("numpy", "ndarray")] = np.ndarray
    out[("numpy", "dtype")] = np.dtype
    return out


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it to store bytes (array buffers): latin-1 only."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] | None = None


def allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> the object the unpickler substitutes; nothing else resolves."""
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = {**_numpy_globals(), ("easydict", "EasyDict"): _AttrDict,
                    ("builtins", "range"): range, ("__builtin__", "xrange"): range,  # PETA label_idx.extra
                    ("_codecs", "encode"): _latin1_bytes,
                    ("collections", "OrderedDict"): dict}
    return _ALLOWED


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :func:`allowed_globals`; everything else raises
    :class:`UnsafePickleError` before the pickle's REDUCE/BUILD could call it."""

    def __init__(self, file: io.BufferedIOBase, path: Path):
        super().__init__(file)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = allowed_globals().get((module, name))
        if obj is None:
            raise UnsafePickleError(
                self.path, f"refused to load: the pickle needs {module}.{name}, which is not a plain container "
                "or numpy array (a pickle can run code when loaded; convert trusted files with "
                "`hcbench data convert par-pickle` on a machine where that is acceptable)")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(self.path, "refused to load: the pickle uses persistent ids")


def safe_load_pickle(path: str | Path) -> Any:
    """Load a pickle of plain containers and numpy arrays; anything else is refused."""
    path = Path(path)
    require_file(path, "attribute split pickle")
    with open(path, "rb") as f:
        try:
            return SafeUnpickler(f, path).load()
        except UnsafePickleError:
            raise
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
            raise DataFormatError(path, f"not a readable pickle ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------- content
def _plain(obj: Any) -> Any:
    """Containers and arrays -> JSON-able values (arrays -> lists, numpy scalars -> Python)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (list, tuple, range)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return obj


def load_description(path: str | Path) -> dict:
    """The dataset description of a ``.pkl`` (safe unpickling) or its converted ``.json``."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        from hcbench.data.readers.coco import load_json

        doc = load_json(path)
    else:
        doc = safe_load_pickle(path)
    if not isinstance(doc, Mapping):
        raise DataFormatError(path, f"expected a dataset description mapping, got {type(doc).__name__}")
    for key in ("image_name", "label", "attr_name", "partition"):
        if key not in doc:
            raise DataFormatError(path, f"the dataset description has no {key!r}; keys: {sorted(map(str, doc))}")
    return dict(doc)


def convert_to_json(src: str | Path, dst: str | Path) -> Path:
    """Write the content of a Rethinking-of-PAR pickle as JSON (safe unpickling), atomically."""
    from hcbench.io import atomic_write_text

    doc = load_description(src)
    keep = {k: doc[k] for k in ("image_name", "label", "attr_name", "label_idx", "partition", "description")
            if k in doc}
    atomic_write_text(Path(dst), json.dumps(_plain(keep), separators=(",", ":")) + "\n")
    return Path(dst)


def _rows(part: Any, split: str, n: int, path: Path) -> np.ndarray:
    if not isinstance(part, Mapping) or split not in part:
        have = sorted(map(str, part)) if isinstance(part, Mapping) else type(part).__name__
        raise DataFormatError(path, f"partition has no {split!r}; it has {have}")
    rows = part[split]
    if isinstance(rows, list) and rows and not np.isscalar(rows[0]):
        rows = rows[0]  # several random partitions: the first, as the release reads it
    arr = np.asarray(rows)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise DataFormatError(path, f"partition[{split!r}] is not a list of row indices", record=f"partition.{split}")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise DataFormatError(path, f"row {int(bad[0])} outside 0..{n - 1}", record=f"partition.{split}")
    return arr.astype(np.int64)


def evaluated(doc: Mapping, path: Path) -> tuple[list[str], np.ndarray]:
    """(names, N x A' uint8 labels) of the evaluated attributes (``label_idx.eval``)."""
    names = [str(v) for v in doc["attr_name"]]
    labels = np.asarray(doc["label"])
    if labels.ndim != 2 or labels.shape[1] != len(names):
        raise DataFormatError(path, f"label has shape {labels.shape}; expected (N, {len(names)}) for "
                              f"{len(names)} attr_name entries")
    if len(doc["image_name"]) != len(labels):
        raise DataFormatError(path, f"{len(doc['image_name'])} image names for {len(labels)} label rows")
    idx_doc = doc.get("label_idx")
    cols = list(range(len(names)))
    if isinstance(idx_doc, Mapping) and "eval" in idx_doc:
        cols = [int(c) for c in idx_doc["eval"]]
        if any(not 0 <= c < len(names) for c in cols):
            raise DataFormatError(path, f"label_idx.eval names a column outside 0..{len(names) - 1}")
    sub = labels[:, cols]
    bad = ~np.isin(sub, (0, 1, 2))
    if bad.any():
        r, c = (int(v) for v in np.argwhere(bad)[0])
        raise DataFormatError(path, f"label {sub[r, c].item()!r} at column {cols[c]}; expected 0, 1 or 2",
                              record=f"row {r}")
    out = sub.astype(np.uint8)
    out[out == 2] = 0  # uncertain reads as negative, as the release does
    return [names[c] for c in cols], out


@DATASETS.register("par_pickle")
def read_par(root: Path, split: str, card: DatasetCard, *, limit: int | None = None) -> DatasetSplit:
    from hcbench.data.readers.attributes import check_names

    if split not in SPLITS:
        raise DataFormatError(Path(root), f"no split {split!r} in this format; use one of {list(SPLITS)}")
    p = role_paths(Path(root), card, split, ("annotation", "images"))
    path = require_file(p["annotation"], f"annotation of split {split!r}")
    doc = load_description(path)
    names, labels = evaluated(doc, path)
    check_names(names, card, path)
    rows = _rows(doc["partition"], split, len(labels), path)
    if limit is not None:
        rows = rows[: max(0, limit)]
    files = [str(v) for v in doc["image_name"]]
    meta = card.meta()
    assert isinstance(meta, AttributeMeta)
    samples = [AttributeSample(p["images"] / files[i], labels[i].copy()) for i in rows]
    return DatasetSplit(card.name, split, "attributes", samples, meta, files=[path])


def write_par_pickle(path: str | Path, image_names: Sequence[str], labels: np.ndarray, attr_names: Sequence[str],
                     partition: Mapping[str, Sequence[int]], eval_idx: Sequence[int] | None = None) -> Path:
    """Write a dataset description in the release's layout (plain dicts; ``trainval`` = train + val
    when not given), atomically. ``.json`` paths get the converted JSON form instead."""
    from hcbench.io import atomic_write_bytes, atomic_write_text

    part = {k: np.asarray(v, np.int64) for k, v in partition.items()}
    if "trainval" not in part and "train" in part and "val" in part:
        part["trainval"] = np.concatenate([part["train"], part["val"]])
    doc: dict[str, Any] = {"description": "written by hcbench", "image_name": list(image_names),
                           "label": np.asarray(labels, np.uint8), "attr_name": list(attr_names), "partition": part}
    if eval_idx is not None:
        doc["label_idx"] = {"eval": [int(i) for i in eval_idx]}
    path = Path(path)
    if path.suffix.lower() == ".json":
        atomic_write_text(path, json.dumps(_plain(doc), separators=(",", ":")) + "\n")
    else:
        atomic_write_bytes(path, pickle.dumps(doc, protocol=4))
    return path
