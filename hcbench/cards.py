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

from hcbench.errors import UserError

Tier = Literal["full", "quick", "smoke"]
TIERS: tuple[str, ...] = ("full", "quick", "smoke")
# keys a tier may override: the schedule, plus how much data a smoke run touches
TIER_KEYS = {"epochs", "steps", "max_iters", "batch_size", "warmup_iters", "eval_limit", "train_limit"}


def higher_is_better(metric: str, family: str | None = None) -> bool:
    """A metric's direction as its family declares it (``Family.metrics``). Without ``family``:
    lower is better when any registered family declares the key so; otherwise higher.

    Families are reached through the registry: ``hcbench.families`` sits above this module."""
    from hcbench.registry import FAMILIES

    if family is not None:
        try:
            found = FAMILIES.get(family).higher_is_better(metric)
        except KeyError:
            found = None
        if found is not None:
            return found
    exact = [e.obj.metric(metric) for e in FAMILIES]
    declared = [m for m in exact if m is not None]
    if not declared:
        return True
    # an exact key beats a pattern ("MR-2" over "*"), then any lower-is-better declaration wins
    plain = [m for m in declared if m.key == metric] or declared
    return all(m.higher_is_better for m in plain)


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
    type: Literal["adamw", "adam", "sgd"] = "adamw"  # adam: L2 weight decay in the gradient (IRRA)
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
    family: str  # a registered task family (hcbench.registry.FAMILIES)
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
    def _family_options(self) -> TaskCard:
        """The family exists, its metrics' direction matches, and the ``adapter``, ``augment`` and
        ``eval.options`` mappings fit the family's typed option models (stored as written)."""
        from hcbench.registry import FAMILIES

        try:
            fam = FAMILIES.get(self.family)
        except KeyError as e:  # pydantic reports ValueErrors with the card; a KeyError would escape
            raise ValueError(str(e)) from None
        fam.validate_card(self)
        # a metric the family cannot report would only fail after training: refuse it now
        unknown = [m for m in self.eval.metrics if fam.metric(m) is None]
        if unknown:
            known = ", ".join(m.key for m in fam.metrics)
            raise ValueError(f"eval.metrics: {unknown} not reported by family {self.family!r} (it reports: {known})")
        direction = fam.higher_is_better(self.eval.primary)
        if direction is not None and direction != self.eval.higher_is_better:
            raise ValueError(f"higher_is_better={self.eval.higher_is_better} contradicts metric "
                             f"{self.eval.primary!r} of family {self.family!r}")
        return self

    @model_validator(mode="after")
    def _tiers_schedule_only(self) -> TaskCard:
        for tier, over in self.tiers.items():
            if tier not in ("quick", "smoke"):
                raise ValueError(f"unknown tier {tier!r}; tiers are quick and smoke (full is the card itself)")
            bad = set(over) - TIER_KEYS
            if bad:
                raise ValueError(f"tier {tier!r} may change only {sorted(TIER_KEYS)}, not {sorted(bad)}")
            # check the override's types now, naming tiers.<tier>.<key>, not when a run resolves it
            try:
                ScheduleSpec.model_validate({**self.schedule.model_dump(), **over})
            except ValidationError as e:
                problems = [f"tiers.{tier}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']} "
                            f"(got {err.get('input')!r})" for err in e.errors()]
                raise ValueError("; ".join(problems)) from None
        return self

    @property
    def sha256(self) -> str:
        return card_sha256(self)


class Suite(_Strict):
    name: str
    description: str = ""
    cards: list[str]
    tier: Tier = "full"

    @property
    def missing(self) -> list[str]:
        """Cards the suite names that do not exist (yet): the suite is then incomplete."""
        known = _all_cards(str(tasks_dir()))
        return [c for c in self.cards if c not in known]

    @property
    def available(self) -> list[str]:
        missing = set(self.missing)
        return [c for c in self.cards if c not in missing]

    @property
    def complete(self) -> bool:
        return not self.missing


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


class CardError(UserError, ValueError):
    pass


class IncompleteSuiteError(CardError):
    """A suite names cards that do not exist; running it would give a half suite."""


def suite_cards(suite: Suite, *, allow_missing: bool = False) -> list[str]:
    """The cards to run for ``suite``: all of them, or -- with ``allow_missing`` -- the ones that
    exist. An incomplete suite without ``allow_missing`` raises :class:`IncompleteSuiteError`
    naming the missing cards, before anything runs."""
    missing = suite.missing
    if missing and not allow_missing:
        raise IncompleteSuiteError(
            f"suite {suite.name!r} is incomplete: {len(missing)} of its {len(suite.cards)} cards do not exist "
            f"yet ({', '.join(missing)}); nothing was run. Pass --allow-missing to run the other "
            f"{len(suite.cards) - len(missing)}.")
    return suite.available


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CardError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a mapping at the top level")
    return data


def _readable(e: ValidationError) -> str:
    """One line per problem, ``field.path: message`` (without pydantic's dump of the whole card)."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "\n".join(lines)


def load_card_file(path: str | Path) -> TaskCard:
    path = Path(path)
    data = _read_yaml(path)
    try:
        card = TaskCard.model_validate(data)
    except ValidationError as e:
        raise CardError(f"{path}: invalid protocol card:\n{_readable(e)}") from e
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
    # a card the suite names that does not exist (yet) makes it incomplete, not unreadable:
    # ``Suite.missing`` lists them, ``suite_cards`` refuses to run it without allow_missing
    return suite


def family_of(card_name: str) -> str | None:
    try:
        return get_card(card_name).family
    except CardError:
        return None


__all__ = [
    "TaskCard", "Suite", "resolve", "card_sha256", "get_card", "list_cards",
    "get_suite", "list_suites", "higher_is_better", "CardError", "tasks_dir", "IncompleteSuiteError", "suite_cards",
]
