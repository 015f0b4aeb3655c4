"""MATLAB ``.mat`` helpers: read cells/structs as the public readers index them, and write files with
the same layout (``scipy.io.savemat``), so readers cannot tell a written file from a real one.

``scipy.io.loadmat`` returns a MATLAB cell as an object array whose elements are arrays, a char
array as a 1-element string array, and a struct as a structured array indexed ``[0][0]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hcbench.data.types import DataFormatError


# --------------------------------------------------------------------------- reading
def load_mat(path: Path) -> dict[str, Any]:
    import scipy.io
    from scipy.io.matlab import MatReadError

    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "no such file" if not path.exists() else "is a folder, expected a .mat file")
    if path.stat().st_size == 0:
        raise DataFormatError(path, "empty file, expected a MATLAB .mat file")
    try:
        return scipy.io.loadmat(str(path))
    except NotImplementedError as e:  # MATLAB v7.3 files are HDF5
        raise DataFormatError(path, f"MATLAB v7.3 (HDF5) file; save it with -v7 or earlier ({e})") from None
    # a truncated file surfaces as MatReadError, OSError or IndexError depending on where the cut falls
    except (MatReadError, ValueError, TypeError, OSError, IndexError, EOFError) as e:
        raise DataFormatError(path, f"not a readable MATLAB file (truncated or corrupt?): {e}") from None


def get_field(mat: Mapping[str, Any], key: str, path: Path) -> Any:
    if key not in mat:
        have = sorted(k for k in mat if not k.startswith("__"))
        raise DataFormatError(path, f"no variable {key!r}; the file has {have}")
    return mat[key]


def struct_field(struct: np.ndarray, index: int, name: str, path: Path) -> Any:
    """Field ``index`` (positional, as the public readers access it) of a 1x1 MATLAB struct."""
    try:
        return struct[0][0][index]
    except (IndexError, TypeError, KeyError):
        raise DataFormatError(path, f"struct has no field #{index} ({name})") from None


def to_str(x: Any) -> str:
    """A MATLAB char array / cell element as str (unwraps the 1-element nesting)."""
    while isinstance(x, np.ndarray):
        if x.size != 1:
            if x.dtype.kind == "U" and x.size == 0:
                return ""
            raise ValueError(f"expected one string, got an array of shape {x.shape}")
        x = x.reshape(-1)[0]
    return str(x)


def cell_strings(cell: Any, path: Path, what: str) -> list[str]:
    arr = np.asarray(cell, dtype=object).reshape(-1)
    out = []
    for i, x in enumerate(arr):
        try:
            out.append(to_str(x))
        except ValueError as e:
            raise DataFormatError(path, f"{what}[{i}]: {e}") from None
    return out


def int_vector(x: Any, path: Path, what: str) -> np.ndarray:
    """A MATLAB numeric vector (row or column, often stored as double) as int64, checked integral."""
    arr = np.asarray(x)
    if arr.dtype == object or (arr.ndim == 2 and min(arr.shape) > 1) or arr.ndim > 2:
        raise DataFormatError(path, f"{what}: expected a numeric vector, got {arr.dtype} {arr.shape}")
    arr = arr.reshape(-1)
    if arr.dtype.kind == "f" and (not np.isfinite(arr).all() or (arr != np.round(arr)).any()):
        raise DataFormatError(path, f"{what}: expected integers")
    return arr.astype(np.int64)


def index_vector(x: Any, n: int, path: Path, what: str) -> np.ndarray:
    """1-based MATLAB indices -> 0-based, each checked to lie in [1, n]."""
    idx = int_vector(x, path, what)
    bad = np.flatnonzero((idx < 1) | (idx > n))
    if bad.size:
        raise DataFormatError(path, f"index {int(idx[bad[0]])} outside [1, {n}]", record=f"{what}[{int(bad[0])}]")
    return idx - 1


# --------------------------------------------------------------------------- writing
def cell_column(strings: Sequence[str]) -> np.ndarray:
    """An N x 1 cell of char arrays."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = str(s)
    return out


def cell_of(items: Sequence[Any], shape: tuple[int, int]) -> np.ndarray:
    out = np.empty(shape, dtype=object)
    for i, x in enumerate(items):
        out.flat[i] = x
    return out


def struct(**fields: Any) -> np.ndarray:
    """A 1x1 MATLAB struct; field order is kept (readers index fields by position)."""
    out = np.empty((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        out[0, 0][k] = v
    return out


def column(values: Sequence[int] | np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def row(values: Sequence[int] | np.ndarray, dtype: Any = np.float64) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(1, -1)


def save_mat(path: Path, variables: Mapping[str, Any]) -> Path:
    import scipy.io

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), dict(variables), do_compression=True)
    return path
