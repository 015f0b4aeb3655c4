"""Export a pretrained student as ``students/<name>/`` so that ``student:<name>`` loads it.

Also exports the backbone of a finished fine-tuning run (:func:`export_finetuned`), which is how
a teacher for DPAL/feature-kd is made from a task-trained model.

``backbone.safetensors`` holds the timm model's state dict (the keys
:func:`hcbench.backbones.checkpoint.load_into` expects; pretraining heads are not included)
with metadata ``{"hcbench.architecture": <spec>}``; ``card.yaml`` beside it records the
architecture (required by the loader), the position grid the weights were trained at, and
the run's provenance. Both files are written atomically, weights first.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import torch
import yaml

from hcbench.backbones.features import Backbone
from hcbench.errors import ConfigError, InputNotFoundError
from hcbench.io import atomic_write_bytes, atomic_write_text, sha256_file


def architecture_of(spec: str) -> str:
    """The alias/``timm:`` architecture behind a spec (a ``file:``/``student:`` spec's card says)."""
    kind, sep, rest = spec.partition(":")
    if not (sep and kind in ("file", "student")):
        return spec
    from hcbench.backbones import _sidecar, students_dir

    path = Path(rest).expanduser() if kind == "file" else students_dir() / rest / "backbone.safetensors"
    return str(_sidecar(path)["architecture"])


def backbone_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    """The tensors that ``load_into`` reads back: the wrapped timm model's state dict."""
    target = getattr(backbone, "model", backbone)
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in target.state_dict().items()}


def position_grid(backbone: Backbone) -> list[int] | None:
    pe = getattr(getattr(backbone, "model", None), "patch_embed", None)
    grid = getattr(pe, "grid_size", None)
    return [int(g) for g in grid] if grid is not None else None


def export_student(backbone: Backbone, name: str, *, architecture: str, info: dict[str, Any] | None = None,
                   root: str | Path | None = None) -> Path:
    """Write ``<root>/<name>/backbone.safetensors`` + ``card.yaml``; returns the folder."""
    from safetensors.torch import save

    from hcbench import __version__
    from hcbench.backbones import students_dir

    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"--name {name!r}: use a plain folder name (letters, digits, -, _)")
    if architecture.startswith(("file:", "student:")):
        raise ConfigError(f"architecture must be an alias or timm:<name>, not {architecture!r}")
    folder = Path(root) if root is not None else students_dir()
    folder = folder / name
    weights = folder / "backbone.safetensors"
    atomic_write_bytes(weights, save(backbone_state(backbone), metadata={"hcbench.architecture": architecture}))
    card: dict[str, Any] = {"architecture": architecture}
    # the statistics the weights were trained with travel with them (the alias default may change)
    card.update(mean=[float(v) for v in backbone.mean], std=[float(v) for v in backbone.std])
    grid = position_grid(backbone)
    if grid is not None:
        card["pos_grid"] = grid
    card.update(info or {})
    card.update({"weights_sha256": sha256_file(weights), "hcbench": __version__,
                 "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    atomic_write_text(folder / "card.yaml", yaml.safe_dump(_plain(card), sort_keys=False))
    return folder


def export_finetuned(record_path: str | Path, name: str, *, root: str | Path | None = None) -> Path:
    """Export the backbone of a finished ``hcbench run`` as ``student:<name>`` (e.g. a teacher).

    Reads the record, the ``<card>.config.json`` the runner wrote beside it (backbone spec,
    resolved card, work dir) and the run's final ``last.pt``; the backbone is rebuilt at the
    card's input size and loaded strictly, so a mismatch fails here rather than at use.
    """
    from hcbench.backbones import build_backbone
    from hcbench.engine.checkpoint import read_checkpoint
    from hcbench.results.store import read_record

    record_path = Path(record_path)
    record = read_record(record_path)
    trained = getattr(record.run, "trained", True)
    if record.status != "ok" or not trained:
        raise ConfigError(f"{record_path}: only a successful trained run can be exported "
                         f"(status={record.status}, trained={trained})")
    config_path = record_path.with_name(f"{record_path.stem}.config.json")  # <card>[.<tier>][.s<seed>]
    if not config_path.is_file():
        raise InputNotFoundError(f"{config_path}: the run's config is missing (written by `hcbench run`)")
    config = json.loads(config_path.read_text())
    if config.get("card_sha256") != record.card.sha256:
        raise ConfigError(f"{config_path}: belongs to another run of {record.card.name} (card sha256 differs)")
    ckpt = Path(config["work_dir"]) / "last.pt"
    if not ckpt.is_file():
        raise InputNotFoundError(f"{ckpt}: the run's final checkpoint is missing (was its work dir deleted?)")
    state = read_checkpoint(ckpt)
    weights = {k[len("backbone."):]: v for k, v in state["model"].items() if k.startswith("backbone.")}
    size = (int(config["card"]["input"]["height"]), int(config["card"]["input"]["width"]))
    spec = str(config["backbone"])
    backbone = build_backbone(spec, size)
    backbone.load_state_dict(weights, strict=True)
    info = {"method": "finetune", "source": {"backbone": spec, "card": record.card.name, "tier": record.card.tier,
                                            "card_sha256": record.card.sha256, "seed": record.run.seed,
                                            "metrics": record.metrics, "checkpoint_sha256": sha256_file(ckpt)}}
    return export_student(backbone, name, architecture=architecture_of(spec), info=info, root=root)


def _plain(obj: Any) -> Any:
    """YAML-safe copy (tuples -> lists, paths -> str, numpy/torch scalars -> float)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
