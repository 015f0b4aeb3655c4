"""The task-family contract: one :class:`Family` object per task family, registered in
``hcbench.registry.FAMILIES`` (entry-point group ``hcbench.families``).

A family is data, like a backbone: everything that used to be an ``if family == ...`` chain
lives on its :class:`Family`, and every caller (card loading, ``data check``, ``data synth``,
``hcbench score``, ``run``, submission re-scoring, the leaderboard and tables) reads it from
the registry. Adding a family is registering one object; nothing under ``hcbench/`` changes::

    from hcbench.families.base import Family, MetricKey, OptionsModel
    from hcbench.registry import FAMILIES

    class ToyEval(OptionsModel):
        threshold: float = 0.5

    FAMILIES.add("toy", Family(
        name="toy", label="Toy",
        metrics=(MetricKey("acc"), MetricKey("err", higher_is_better=False)),
        adapter="my_pkg.toy:ToyAdapter",        # lazy "module:attr": imported on first use
        evaluator="my_pkg.toy:ToyEvaluator",
        eval_options=ToyEval,
    ))

Contract (stable; fields may be added with defaults, never renamed or removed):

``name``            the family name cards and dataset cards use (``family: pose``).
``label``           the table/leaderboard heading ("Pose").
``metrics``         :class:`MetricKey` s: every metric key the evaluator can report (exact keys or
                    ``fnmatch`` patterns such as ``"IoU/*"``) with its direction. This is the one
                    place a metric's direction is declared (``hcbench.cards.higher_is_better``).
``adapter``         the model side (head + loss + decode, see ``hcbench.adapters.base.TaskAdapter``):
                    an object/class, or a lazy ``"module:attr"`` reference so ``import hcbench``
                    stays free of torch. A class is instantiated once without arguments.
``evaluator``       the :class:`Evaluator`: predictions-file codec + metric binding, used by
                    ``hcbench run`` (through the adapter), ``submit validate --rescore`` and
                    ``hcbench score`` alike. Object/class or ``"module:attr"``.
``adapter_options`` pydantic model (``extra="forbid"``) of the card's ``adapter`` mapping,
``eval_options``    ... of its ``eval.options`` mapping, and
``augment_options`` ... of its ``augment`` mapping (``None``: not validated).
                    Validated when a card loads: a misspelt key fails naming the card and key.
                    Card files keep the mappings as written (defaults are *not* injected, so a
                    card's sha256 does not depend on the models); adapters read the typed values
                    with :meth:`Family.options`.
``sample_type``, ``meta_type``  the per-record and per-dataset types its readers return.
``dataset_requires`` dataset-card fields a dataset card of this family must set.
``dataset_meta``    ``(DatasetCard) -> meta`` (e.g. a ``KeypointMeta``); default: ``None``.
``check_records``   ``(DatasetCard, DatasetSplit) -> list[str]``: cheap per-record problems for
                    ``hcbench data check`` (each message names file and record).
``check_split``     ``(DatasetCard, split_name, DatasetSplit) -> (problems, summary_counts)``.
``check_image``     ``(sample, meta, record_name) -> list[str]``: replaces the default "the image
                    decodes" check per sample (parsing checks image + label pair).
``synthetic``       :class:`SynthDataset` s this family contributes to ``hcbench data synth``.
``score_args``      :class:`ScoreArg` s of ``hcbench score <name>``: each becomes a keyword of
                    ``Evaluator.score_files``; with ``--card`` the card supplies the protocol.
``order``           sort key of the family in tables (built-ins 10..50; plugins default 100).

Callables may be given as ``"module:attr"`` strings everywhere; :func:`load_ref` imports them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, ValidationError

from hcbench.errors import UserError
from hcbench.registry import load_ref

if TYPE_CHECKING:  # pragma: no cover - typing only; these modules import this one lazily
    from hcbench.cards import TaskCard
    from hcbench.data.types import DatasetSplit

Ref = Any  # a callable/object/class, or a lazy "module:attr" string


class FamilyError(UserError, ValueError):
    """A card or dataset card that does not fit its family (unknown key, bad value, unknown family)."""


class OptionsModel(BaseModel):
    """Base of a family's typed card options: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(OptionsModel):
    """A family whose cards take no options in this mapping."""


@dataclass(frozen=True)
class MetricKey:
    """A metric the evaluator reports. ``key`` is exact or an ``fnmatch`` pattern (``IoU/*``)."""

    key: str
    higher_is_better: bool = True
    description: str = ""

    def matches(self, metric: str) -> bool:
        return metric == self.key or fnmatch.fnmatchcase(metric, self.key)


@dataclass(frozen=True)
class ScoreArg:
    """One option of ``hcbench score <family>`` (declarative, so no library code reads argparse).

    ``flag`` is the command-line flag (``--sigmas``); the parsed value is passed to
    ``Evaluator.score_files`` as keyword ``dest``. ``type`` converts the text (``Path``, ``int``,
    ``float``, ``str``); ``flag_only``: a boolean switch (``store_true``). ``default=None`` means
    "not given": with ``--card`` the card's value applies, without it the evaluator's default.
    """

    flag: str
    dest: str
    type: Callable[[str], Any] | None = str
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    required: bool = False
    flag_only: bool = False


@dataclass(frozen=True)
class SynthDataset:
    """A synthetic dataset a family writes for ``hcbench data synth`` (and its smoke card).

    ``sizes``: size tier (``smoke``, ``small``) -> record counts, e.g. ``{"train": 400, "val": 100}``.
    ``write``: ``(root, counts, seed, keep) -> (facts, shown)`` writes the dataset in its real on-disk
    format under ``root``; ``facts`` (JSON-able) go into ``synth.json``, ``shown`` (up to ``keep``
    samples per split) is handed to ``preview``: ``(shown, folder, name) -> None`` which draws
    contact sheets into ``folder``. ``unscaled``: count keys a test ``fraction`` leaves alone.
    """

    name: str
    sizes: Mapping[str, Mapping[str, int]]
    write: Ref
    preview: Ref | None = None
    unscaled: tuple[str, ...] = ()


@runtime_checkable
class Evaluator(Protocol):
    """A family's predictions-file codec and metric binding (one per family).

    ``eval_split`` reads the split a card evaluates on (the adapter's ``build_data(..., "eval")``
    returns it, re-scoring reads it too, so both see the same samples in the same order);
    ``write``/``read`` are the codec of the predictions file ``run`` saves and a submission
    ships (suffix ``predictions_suffix``); ``score`` computes the card's metrics from that file
    against that split — the same call for ``run`` and ``submit validate --rescore``;
    ``score_files`` is ``hcbench score <family>``: ground truth from files (with a card: the
    dataset root), the protocol from ``card`` when given, else from ``options``.
    :class:`hcbench.families.evaluator.BaseEvaluator` implements ``eval_split`` and the card path
    of ``score_files``.
    """

    predictions_suffix: str

    def eval_split(self, card: TaskCard, root: Path | None, limit: int | None = None) -> DatasetSplit: ...

    def write(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard, path: Path) -> Path: ...

    def read(self, path: Path, split: DatasetSplit, card: TaskCard) -> Any: ...

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, Any]: ...

    def score_files(self, pred: Path, gt: Path | None = None, card: TaskCard | None = None,
                    **options: Any) -> dict[str, Any]: ...


_INSTANCES: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True)
class Family:
    """One task family (see the module docstring for the contract of every field)."""

    name: str
    label: str
    metrics: tuple[MetricKey, ...]
    adapter: Ref
    evaluator: Ref
    adapter_options: type[BaseModel] = NoOptions
    eval_options: type[BaseModel] = NoOptions
    augment_options: type[BaseModel] | None = None
    sample_type: type | None = None
    meta_type: type | None = None
    dataset_requires: tuple[str, ...] = ()
    dataset_meta: Ref | None = None
    check_records: Ref | None = None
    check_split: Ref | None = None
    check_image: Ref | None = None
    synthetic: tuple[SynthDataset, ...] = ()
    score_args: tuple[ScoreArg, ...] = ()
    score_help: str = ""
    order: int = 100
    description: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- lazy parts ---------------------------------------------------------------------
    def _instance(self, what: str, ref: Ref) -> Any:
        key = (self.name, what)
        if key not in _INSTANCES or (not isinstance(ref, str) and _INSTANCES[key][0] is not ref):
            obj = load_ref(ref)
            _INSTANCES[key] = (ref, obj() if isinstance(obj, type) else obj)
        return _INSTANCES[key][1]

    def get_adapter(self) -> Any:
        """The family's task adapter (imported on first use; torch loads here, not before)."""
        return self._instance("adapter", self.adapter)

    def get_evaluator(self) -> Evaluator:
        """The family's evaluator (imported on first use)."""
        return self._instance("evaluator", self.evaluator)

    def hook(self, name: str) -> Callable[..., Any] | None:
        """A callable hook field (``dataset_meta``, ``check_records``, ...), imported, or None."""
        ref = getattr(self, name)
        return None if ref is None else load_ref(ref)

    # -- metrics ------------------------------------------------------------------------
    def metric(self, key: str) -> MetricKey | None:
        return next((m for m in self.metrics if m.matches(key)), None)

    def higher_is_better(self, key: str) -> bool | None:
        """The direction of ``key`` declared by this family, or None when it does not report it."""
        m = self.metric(key)
        return None if m is None else m.higher_is_better

    # -- card options -------------------------------------------------------------------
    def _model(self, which: str) -> type[BaseModel] | None:
        models = {"adapter": self.adapter_options, "eval.options": self.eval_options,
                  "augment": self.augment_options}
        if which not in models:
            raise ValueError(f"unknown card section {which!r}; one of {sorted(models)}")
        return models[which]

    def parse_options(self, which: str, values: Mapping[str, Any], card_name: str = "?") -> BaseModel | None:
        """Validate one card mapping (``adapter``, ``eval.options`` or ``augment``) against this
        family's model; raises :class:`FamilyError` naming the card and every bad key."""
        model = self._model(which)
        if model is None:
            return None
        try:
            return model.model_validate(dict(values))
        except ValidationError as e:
            problems = []
            for err in e.errors():
                key = ".".join(str(p) for p in err["loc"]) or "(mapping)"
                if err["type"] == "extra_forbidden":
                    known = ", ".join(sorted(model.model_fields)) or "none"
                    problems.append(f"unknown {which} key {key!r} for family {self.name!r} (known: {known})")
                else:
                    problems.append(f"{which}.{key}: {err['msg']} (got {err.get('input')!r})")
            raise FamilyError(f"card {card_name!r}: " + "; ".join(problems)) from None

    def validate_card(self, card: TaskCard) -> None:
        for which, values in (("adapter", card.adapter), ("eval.options", card.eval.options),
                              ("augment", card.augment)):
            self.parse_options(which, values, card.name)

    def options(self, card: TaskCard, which: str = "eval.options") -> Any:
        """The card's typed options (defaults filled in) for ``adapter``/``eval.options``/``augment``."""
        values = {"adapter": card.adapter, "eval.options": card.eval.options, "augment": card.augment}[which]
        parsed = self.parse_options(which, values, card.name)
        if parsed is None:
            raise ValueError(f"family {self.name!r} declares no model for {which}")
        return parsed

    # -- synthetic data -------------------------------------------------------------------
    def synth(self, name: str) -> SynthDataset | None:
        return next((s for s in self.synthetic if s.name == name), None)


def get_family(name: str) -> Family:
    """The registered family ``name`` (built-ins, entry points and ``--include`` files)."""
    from hcbench.registry import FAMILIES

    return FAMILIES.get(name)


def families() -> list[Family]:
    """Every registered family in table order (``order``, then name)."""
    from hcbench.registry import FAMILIES

    return sorted((e.obj for e in FAMILIES), key=lambda f: (f.order, f.name))


def family_names() -> list[str]:
    return [f.name for f in families()]


__all__ = [
    "Family", "MetricKey", "ScoreArg", "SynthDataset", "Evaluator", "OptionsModel", "NoOptions",
    "FamilyError", "load_ref", "get_family", "families", "family_names",
]
