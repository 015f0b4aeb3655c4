"""Parameter count and FLOPs of a backbone at a given input size, and the cached counts the
``hcbench list backbones`` table shows.

Counting needs no weights and no arithmetic: the model is built on the ``meta`` device (shapes
only) and ``torch.utils.flop_counter`` follows one forward pass there, which gives the same
numbers as a real CPU forward (checked for every built-in by the tests) in a fraction of the time.
The counts are also kept in a small JSON cache (``$HCBENCH_CACHE``, else ``$XDG_CACHE_HOME/hcbench``,
else ``~/.cache/hcbench``) keyed by the backbone name, the input size and a fingerprint of the
code that defines it (the source files of the package holding its factory, hcbench's backbone
code, and the torch/timm versions), so an edit to an architecture is never served stale numbers.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

CACHE_VERSION = 1
_STATS_KEYS = ("params", "gflops", "embed_dim", "stride")


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def gflops(model: nn.Module, height: int, width: int) -> float:
    """Multiply-adds x 1e-9 for one image (the convention of fvcore and of the field's tables,
    where "FLOPs" counts a multiply-add once). Counted by ``torch.utils.flop_counter``; a model
    on the ``meta`` device is counted without computing anything."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {}
    for op_name in ("_scaled_dot_product_flash_attention_for_cpu",):  # no formula in torch's counter
        op = getattr(aten, op_name, None)
        if op is not None:
            custom[op] = _sdpa_flops
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False, custom_mapping=custom) as counter:
            model(torch.zeros(1, 3, height, width, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v  # QK^T and AV


def measure(build: Any, height: int, width: int) -> dict[str, Any]:
    """``params``, ``gflops`` (rounded to 3 decimals, as listed), ``embed_dim`` and ``stride`` of the
    backbone ``build()`` makes, built on the meta device; a builder that cannot run there
    (a plugin reading weights at build time, say) is measured on the CPU instead."""
    try:
        with torch.device("meta"):
            model = build()
        flops = gflops(model, height, width)
    except Exception:
        model = build()
        flops = gflops(model, height, width)
    return {"params": count_params(model), "gflops": round(flops, 3), "embed_dim": model.embed_dim,
            "stride": model.stride}


# --------------------------------------------------------------------------- cache
def cache_path() -> Path:
    root = os.environ.get("HCBENCH_CACHE")
    if not root:
        root = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hcbench")
    return Path(root) / "backbone_stats.json"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "-"


_DIR_HASHES: dict[Path, str] = {}


def _dir_hash(folder: Path) -> str:
    if folder not in _DIR_HASHES:
        h = hashlib.sha256()
        for f in sorted(folder.glob("*.py")):
            h.update(f.name.encode())
            h.update(f.read_bytes())
        _DIR_HASHES[folder] = h.hexdigest()
    return _DIR_HASHES[folder]


def fingerprint(factory: Any, meta: dict[str, Any]) -> str | None:
    """What the counts of a registered backbone depend on; None when its source cannot be found
    (then it is never cached)."""
    try:
        src = inspect.getsourcefile(inspect.unwrap(factory))
    except TypeError:
        src = None
    if src is None:
        return None
    h = hashlib.sha256()
    for folder in dict.fromkeys([Path(src).resolve().parent, Path(__file__).resolve().parent]):
        h.update(_dir_hash(folder).encode())
    h.update(json.dumps(meta, sort_keys=True, default=repr).encode())
    h.update(f"torch {_version('torch')} timm {_version('timm')} v{CACHE_VERSION}".encode())
    return h.hexdigest()


def load_cache(path: Path | None = None) -> dict[str, Any]:
    path = path or cache_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_cache(cache: dict[str, Any], path: Path | None = None) -> None:
    """Best effort: a read-only home or a full disk leaves the listing correct, only slower."""
    from hcbench.io import atomic_write_json

    try:
        atomic_write_json(path or cache_path(), cache)
    except OSError:
        pass


def cached_stats(cache: dict[str, Any], name: str, factory: Any, meta: dict[str, Any], build: Any,
                 height: int, width: int) -> tuple[dict[str, Any], bool]:
    """(counts, whether ``cache`` was updated) of the backbone ``name``: from ``cache`` when its
    fingerprint still matches, else measured and stored there."""
    fp = fingerprint(factory, meta)
    key = f"{name}@{height}x{width}"
    hit = cache.get(key)
    if fp is not None and isinstance(hit, dict) and hit.get("fingerprint") == fp and \
            all(k in hit for k in _STATS_KEYS):
        return {k: hit[k] for k in _STATS_KEYS}, False
    stats = measure(build, height, width)
    if fp is None:
        return stats, False
    cache[key] = {"fingerprint": fp, **stats}
    return stats, True
