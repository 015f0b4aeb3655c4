"""Dataset cards (``datasets/<name>.yaml``): layout, split sizes, names, license, citation.

A card is validated by pydantic when loaded. ``format`` names the reader registered in
``hcbench.registry.DATASETS``; each split lists the files the reader needs as
``role: relative/path`` (the roles a reader uses are documented on the reader).
"""

from __future__ import annotations

import difflib
import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hcbench.data.types import Family
from hcbench.errors import UserError


class DatasetCardError(UserError, ValueError):
    pass


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeypointSpec(_M):
    names: list[str]
    flip_pairs: list[tuple[int, int]] = Field(default_factory=list)
    skeleton: list[tuple[int, int]] = Field(default_factory=list)
    sigmas: list[float] = Field(default_factory=list)
    upper_body: list[int] = Field(default_factory=list)
    lower_body: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> KeypointSpec:
        k = len(self.names)
        if self.sigmas and len(self.sigmas) != k:
            raise ValueError(f"{len(self.sigmas)} sigmas for {k} keypoints")
        for a, b in [*self.flip_pairs, *self.skeleton]:
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"keypoint pair ({a}, {b}) out of range for {k} keypoints")
        return self


class SplitSpec(_M):
    files: dict[str, str]  # role -> path relative to the dataset root
    size: int | None = Field(None, ge=0)  # expected number of records (persons/images)
    note: str = ""


class DatasetCard(_M):
    name: str
    family: Family
    format: str
    description: str = ""
    homepage: str = ""
    obtain: str = ""  # how users get the data (registration, download page)
    license: str = ""
    citation: str = ""
    synthetic: bool = False
    splits: dict[str, SplitSpec]
    keypoints: KeypointSpec | None = None
    classes: list[str] | None = None
    class_flip_pairs: list[tuple[int, int]] = Field(default_factory=list)
    label_map: dict[int, int] | None = None  # raw label value -> train id (others ignored)
    attributes: list[str] | None = None
    num_cameras: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)  # reader-specific (e.g. protocol variant)

    @model_validator(mode="after")
    def _family_fields(self) -> DatasetCard:
        from hcbench.registry import FAMILIES  # families sit above data: reached by name only

        try:
            fam = FAMILIES.get(self.family)
        except KeyError as e:  # pydantic reports ValueErrors with the card; a KeyError would escape
            raise ValueError(str(e)) from None
        for need in fam.dataset_requires:
            if getattr(self, need, None) is None:
                raise ValueError(f"a {self.family} dataset card needs '{need}'")
        return self

    def meta(self) -> Any:
        """The family's metadata object for this dataset (``Family.dataset_meta``), e.g. a KeypointMeta."""
        from hcbench.registry import FAMILIES

        build = FAMILIES.get(self.family).hook("dataset_meta")
        return build(self) if build is not None else None

    def split(self, split: str) -> SplitSpec:
        if split not in self.splits:
            raise DatasetCardError(f"dataset {self.name!r} has no split {split!r}; splits: {sorted(self.splits)}")
        return self.splits[split]


def datasets_dir() -> Path:
    env = os.environ.get("HCBENCH_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "datasets"


def load_dataset_card(path: str | Path) -> DatasetCard:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
        card = DatasetCard.model_validate(data)
    except (yaml.YAMLError, ValidationError) as e:
        raise DatasetCardError(f"{path}: invalid dataset card:\n{e}") from e
    if card.name != path.stem:
        raise DatasetCardError(f"{path}: card name {card.name!r} must equal the file name {path.stem!r}")
    return card


@cache
def _all(root: str) -> dict[str, DatasetCard]:
    return {p.stem: load_dataset_card(p) for p in sorted(Path(root).glob("*.yaml"))}


# dataset cards that plugins keep outside datasets/ (register_dataset_card)
_EXTRA: dict[str, DatasetCard] = {}


def register_dataset_card(card: str | Path | DatasetCard) -> DatasetCard:
    """Make a dataset card that lives outside ``datasets/`` known by name (a plugin's own dataset).

    A card of the same name in ``datasets/`` wins only if it is the same card; a different one
    is an error, so a plugin cannot silently shadow a built-in dataset.
    """
    if not isinstance(card, DatasetCard):
        card = load_dataset_card(card)
    builtin = _all(str(datasets_dir())).get(card.name)
    if builtin is not None and builtin != card:
        raise DatasetCardError(f"dataset card {card.name!r} is already defined in {datasets_dir()}")
    prev = _EXTRA.get(card.name)
    if prev is not None and prev != card:
        raise DatasetCardError(f"dataset card {card.name!r} is already registered (differently)")
    _EXTRA[card.name] = card
    return card


def _known() -> dict[str, DatasetCard]:
    return {**_EXTRA, **_all(str(datasets_dir()))}


def list_dataset_cards() -> list[DatasetCard]:
    return [c for _, c in sorted(_known().items())]


def get_dataset_card(name: str) -> DatasetCard:
    cards = _known()
    if name not in cards:
        close = difflib.get_close_matches(name, list(cards), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(cards))}"
        raise DatasetCardError(f"unknown dataset {name!r}{hint}")
    return cards[name]


def dataset_root(name: str, root: str | Path | None = None, *, synth_dir: str | Path | None = None) -> Path:
    """Where dataset ``name`` lives: the one rule every command uses (run, data check, rescoring).

    ``root`` (``--root``) is the dataset's folder, or a folder of datasets when it holds a
    ``<name>/`` sub-folder; else ``$HCBENCH_DATA/<name>``. A synthetic dataset with no copy under
    ``$HCBENCH_DATA`` resolves to ``<synth_dir>/<name>`` (default ``./synth_data``), where
    ``hcbench data synth`` (or ``hcbench run --synth``) writes it.
    """
    if root is not None:
        root = Path(root)
        return root / name if (root / name).is_dir() else root
    base = os.environ.get("HCBENCH_DATA")
    if base and (Path(base) / name).is_dir():
        return Path(base) / name
    if get_dataset_card(name).synthetic:
        return Path(synth_dir if synth_dir is not None else "synth_data") / name
    if not base:
        raise DatasetCardError(f"no data root for {name!r}: pass --root DIR or set $HCBENCH_DATA "
                               f"(see datasets/{name}.yaml)")
    return Path(base) / name


def read_split(name: str, split: str, root: str | Path | None = None, *, limit: int | None = None):
    """Read one split of a dataset through its card's reader: the one entry point adapters use."""
    from hcbench.registry import DATASETS

    card = get_dataset_card(name)
    card.split(split)
    reader = DATASETS.get(card.format)
    return reader(dataset_root(name, root), split, card, limit=limit)
