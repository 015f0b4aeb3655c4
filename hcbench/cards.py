"""Protocol cards (``tasks/*.yaml``) and suites (``tasks/suites/*.yaml``).

A card fixes everything that makes two numbers comparable. It is validated by pydantic when
loaded; ``resolve(card, tier)`` applies a budget tier and returns the *resolved* card whose
canonical-JSON sha256 is part of every result's identity. Tiers may change the schedule
(and how much of the split is used), never the protocol itself.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hcbench.data.types import FAMILIES, Family

Tier = Literal["full", "quick", "smoke"]
TIERS: tuple[str, ...] = ("full", "quick", "smoke")
# keys a tier may override: the schedule, plus how much data a smoke run touches
TIER_KEYS = {"epochs", "steps", "max_iters", "batch_size", "warmup_iters", "eval_limit", "train_limit"}

# Metrics where lower is better. Everything else is higher-is-better.
LOWER_IS_BETTER = frozenset({"MR-2", "MR-2_reasonable", "MR-2_heavy", "MR-2_all", "MR-2_bare", "MR-2_partial"})


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER and not metric.startswith("MR-2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetRef(_Strict):
    name: str
    split: str
    train_split: str | None = None


class InputSpec(_Strict):
    height: int = Field(gt=0)
    width: int = Field(gt=0)
    boxes: Literal["ground_truth", "detected"] | None = None
    detections: str | None = None  # relative to the dataset root when boxes == detected


class OptimSpec(_Strict):
    type: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(gt=0)
    weight_decay: float = 0.05
    layer_decay: float = Field(1.0, gt=0, le=1)
    clip_grad: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    backbone_lr_mult: float = 1.0


class ScheduleSpec(_Strict):
    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    scheduler: Literal["step", "cosine"] = "step"
    warmup_iters: int = 0
    warmup_ratio: float = 0.001
    steps: list[int] = Field(default_factory=list)
    gamma: float = 0.1
    max_iters: int | None = None  # hard cap on optimizer steps (smoke tiers)
    train_limit: int | None = None  # use only the first N training samples
    eval_limit: int | None = None  # evaluate only the first N samples


class EvalSpec(_Strict):
    metrics: list[str]
    primary: str
    higher_is_better: bool = True
    flip_test: bool = False
    batch_size: int = 32
    options: dict[str, Any] = Field(default_factory=dict)  # family-specific (sigmas, setups, ...)

    @model_validator(mode="after")
    def _primary_listed(self) -> EvalSpec:
        if self.primary not in self.metrics:
            raise ValueError(f"primary metric {self.primary!r} is not in metrics {self.metrics}")
        if self.higher_is_better != higher_is_better(self.primary):
            raise ValueError(f"higher_is_better={self.higher_is_better} contradicts metric {self.primary!r}")
        return self


class TaskCard(_Strict):
    name: str
    version: int = Field(ge=1)
    family: Family
    description: str = ""
    dataset: DatasetRef
    adapter: dict[str, Any] = Field(default_factory=dict)
    input: InputSpec
    augment: dict[str, Any] = Field(default_factory=dict)
    optim: OptimSpec
    schedule: ScheduleSpec
    eval: EvalSpec
    tiers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tier: Tier | None = None  # set on resolved cards only
    superseded_by: str | None = None
    reference: str = ""  # where the protocol comes from (paper/config)

    @model_validator(mode="after")
    def _tiers_schedule_only(self) -> TaskCard:
        for tier, over in self.tiers.items():
            if tier not in ("quick", "smoke"):
                raise ValueError(f"unknown tier {tier!r}; tiers are quick and smoke (full is the card itself)")
            bad = set(over) - TIER_KEYS
            if bad:
                raise ValueError(f"tier {tier!r} may change only {sorted(TIER_KEYS)}, not {sorted(bad)}")
        return self

    @property
    def sha256(self) -> str:
        return card_sha256(self)


class Suite(_Strict):
    name: str
    description: str = ""
    cards: list[str]
    tier: Tier = "full"


def card_sha256(card: TaskCard) -> str:
    blob = json.dumps(card.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def resolve(card: TaskCard, tier: str = "full") -> TaskCard:
    """Apply a budget tier. The result has ``tier`` set and no ``tiers`` table."""
    if tier not in TIERS:
        raise ValueError(f"unknown tier {tier!r}; choose one of {TIERS}")
    if card.tier is not None:
        raise ValueError(f"card {card.name!r} is already resolved (tier {card.tier})")
    data = card.model_dump()
    over = dict(card.tiers.get(tier, {})) if tier != "full" else {}
    data["schedule"] = {**data["schedule"], **over}
    data["tiers"] = {}
    data["tier"] = tier
    return TaskCard.model_validate(data)


# --------------------------------------------------------------------------- files
def tasks_dir() -> Path:
    """The protocol-card folder: ``$HCBENCH_TASKS`` or the repository's ``tasks/``."""
    env = os.environ.get("HCBENCH_TASKS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "tasks"


class CardError(ValueError):
    pass


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CardError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a mapping at the top level")
    return data


def load_card_file(path: str | Path) -> TaskCard:
    path = Path(path)
    data = _read_yaml(path)
    try:
        card = TaskCard.model_validate(data)
    except ValidationError as e:
        raise CardError(f"{path}: invalid protocol card:\n{e}") from e
    if card.name != path.stem:
        raise CardError(f"{path}: card name {card.name!r} must equal the file name {path.stem!r}")
    return card


@cache
def _all_cards(root: str) -> dict[str, TaskCard]:
    return {p.stem: load_card_file(p) for p in sorted(Path(root).glob("*.yaml"))}


def list_cards(family: str | None = None) -> list[TaskCard]:
    cards = _all_cards(str(tasks_dir())).values()
    return [c for c in cards if family is None or c.family == family]


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=3)
    return f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(options)}"


def get_card(name: str) -> TaskCard:
    """A card by name, or a path to a card file."""
    if name.endswith((".yaml", ".yml")) and Path(name).exists():
        return load_card_file(name)
    cards = _all_cards(str(tasks_dir()))
    if name not in cards:
        raise CardError(f"unknown card {name!r}" + _suggest(name, sorted(cards)))
    return cards[name]


def list_suites() -> list[Suite]:
    return [get_suite(p.stem) for p in sorted((tasks_dir() / "suites").glob("*.yaml"))]


def get_suite(name: str) -> Suite:
    path = tasks_dir() / "suites" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (tasks_dir() / "suites").glob("*.yaml"))
        raise CardError(f"unknown suite {name!r}" + _suggest(name, known))
    try:
        suite = Suite.model_validate(_read_yaml(path))
    except ValidationError as e:
        raise CardError(f"{path}: invalid suite:\n{e}") from e
    for card in suite.cards:
        get_card(card)  # fail early on a suite naming a card that does not exist
    return suite


def family_of(card_name: str) -> str | None:
    try:
        return get_card(card_name).family
    except CardError:
        return None


__all__ = [
    "FAMILIES", "TaskCard", "Suite", "resolve", "card_sha256", "get_card", "list_cards",
    "get_suite", "list_suites", "higher_is_better", "CardError", "tasks_dir",
]
