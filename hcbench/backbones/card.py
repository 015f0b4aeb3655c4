"""Backbone cards: what a checkpoint's sidecar (``<ckpt>.yaml``, ``card.yaml``) or its
safetensors metadata says about the weights.

A card names an ``architecture`` (a registered alias such as ``vit_tiny`` or a release such
as ``dpal_vit_tiny``, or ``timm:<name>``) and may override any architecture parameter the
field's releases vary, plus the input normalisation and the checkpoint's key layout::

    architecture: dpal_vit_tiny
    heads: [6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 12]   # or one number for every block
    pos_embed: {kind: learned, resize: bicubic, antialias: false}
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
    layout: dpal

Unknown fields are errors (a typo must not silently fall back to a default). Safetensors
metadata uses the same fields under ``hcbench.<field>`` keys, values as YAML text
(``hcbench.architecture: vit_tiny``, ``hcbench.heads: "[6, 12]"``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hcbench.errors import UserError

LAYOUTS = ("auto", "timm", "openmmlab-vit", "vitpose", "mae", "path", "transreid", "dpal", "saip", "mmcv-swin",
           "timm-swin")


class BackboneCardError(UserError, ValueError):
    """A sidecar card or safetensors metadata that cannot be read or validated."""


class PosEmbedCard(BaseModel):
    """Absolute position embedding: its kind, how it is resampled to another grid, and how
    its slots line up with the tokens."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["learned", "sincos", "none"] = "learned"
    # the releases resize with F.interpolate(bicubic, align_corners=False) and no antialias
    resize: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    antialias: bool = False
    # ViTPose: a table with one extra slot at index 0 that is added to every patch (no CLS token)
    add_slot0_to_patches: bool = False
    # the (h, w) grid the checkpoint's table was trained at, when its length does not say
    grid: tuple[int, int] | None = None


class BackboneCard(BaseModel):
    """Every field but ``architecture`` overrides the named architecture's value."""

    model_config = ConfigDict(extra="forbid")

    architecture: str
    # ViT
    depth: int | None = Field(None, ge=1)
    width: int | None = Field(None, ge=1)
    heads: int | list[int] | None = None
    mlp_ratio: float | None = None
    qkv_bias: bool | None = None
    cls_token: bool | None = None
    patch_size: int | None = Field(None, ge=1)
    patch_stride: int | None = Field(None, ge=1)
    patch_padding: int | None = Field(None, ge=0)
    pos_embed: PosEmbedCard | None = None
    final_norm: bool | None = None
    norm_eps: float | None = None
    global_pool: Literal["cls", "mean"] | None = None
    # Swin
    depths: list[int] | None = None
    window_size: int | None = Field(None, ge=1)
    semantic_weight: float | None = None
    # input normalisation, [0, 1] units
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    # checkpoint
    layout: Literal[LAYOUTS] = "auto"  # type: ignore[valid-type]
    container: str | None = None  # top-level key holding the weights (e.g. SOLIDER's "teacher")
    strict: bool = True
    pos_grid: tuple[int, int] | None = None  # kept for exported students: = pos_embed.grid
    # provenance written by `hcbench pretrain`/`export` (informational)
    weights_sha256: str | None = None
    hcbench: str | None = None
    date: str | None = None
    info: dict[str, Any] | None = None

    @field_validator("std")
    @classmethod
    def _positive_std(cls, v):
        if v is not None and any(s <= 0 for s in v):
            raise ValueError("std values must be > 0")
        return v

    def overrides(self) -> dict[str, Any]:
        """Architecture parameters the card sets (for the named architecture's builder)."""
        keys = ("depth", "width", "heads", "mlp_ratio", "qkv_bias", "cls_token", "patch_size", "patch_stride",
                "patch_padding", "final_norm", "norm_eps", "global_pool", "depths", "window_size",
                "semantic_weight")
        out = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        if self.pos_embed is not None:
            out["pos_embed"] = self.pos_embed.model_dump()
        return out

    @property
    def checkpoint_grid(self) -> tuple[int, int] | None:
        if self.pos_embed is not None and self.pos_embed.grid is not None:
            return self.pos_embed.grid
        return self.pos_grid


def _validate(data: Any, where: str) -> BackboneCard:
    if not isinstance(data, dict):
        raise BackboneCardError(f"{where}: a backbone card is a mapping with at least 'architecture', "
                                f"found {type(data).__name__}")
    if "architecture" not in data:
        raise BackboneCardError(f"{where}: a backbone card needs an 'architecture' field (e.g. vit_tiny)")
    # a card written by `hcbench pretrain`/`export` (it records the hcbench version) carries
    # provenance beside the architecture (method, teacher, views, ...): kept as info, not errors
    known = set(BackboneCard.model_fields)
    extra = {k: data[k] for k in data if k not in known} if "hcbench" in data else {}
    data = {k: v for k, v in data.items() if k not in extra}
    if extra:
        data["info"] = {**(data.get("info") or {}), **extra}
    try:
        return BackboneCard.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<card>'}: {err['msg']}" for err in e.errors())
        raise BackboneCardError(f"{where}: invalid backbone card: {problems}") from None


def read_card_file(path: Path) -> BackboneCard:
    """Parse and validate a sidecar YAML, with one-line errors naming the file."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BackboneCardError(f"{path}: cannot read the backbone card: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        what = "an unsafe or unknown tag" if isinstance(e, yaml.constructor.ConstructorError) else "a YAML syntax error"
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise BackboneCardError(f"{path}: {what}{at}: {problem}") from None
    return _validate(data or {}, str(path))


def card_from_metadata(meta: dict[str, str], where: str) -> BackboneCard | None:
    """The card stored in safetensors metadata (``hcbench.<field>`` keys), if any."""
    import yaml

    fields = {k[len("hcbench."):]: v for k, v in meta.items() if k.startswith("hcbench.")}
    if "architecture" not in fields:
        return None
    data: dict[str, Any] = {}
    for k, v in fields.items():
        try:
            data[k] = v if k == "architecture" else yaml.safe_load(v)
        except yaml.YAMLError:
            raise BackboneCardError(f"{where}: metadata hcbench.{k}={v!r} is not a YAML value") from None
    return _validate(data, f"{where} (safetensors metadata)")


def sidecar_candidates(path: Path) -> list[Path]:
    return [path.with_name(path.name + ".yaml"), path.with_suffix(".yaml"), path.parent / "card.yaml"]


def find_card(path: Path) -> BackboneCard | None:
    """The sidecar card of a checkpoint, else its safetensors metadata card, else None."""
    for cand in sidecar_candidates(path):
        if cand.is_file():
            return read_card_file(cand)
    if path.suffix == ".safetensors" and path.is_file():
        from hcbench.backbones.checkpoint import safetensors_metadata

        return card_from_metadata(safetensors_metadata(path), str(path))
    return None
