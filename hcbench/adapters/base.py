"""The task-adapter contract: data + functions, not a framework.

The engine (``hcbench.engine``) drives every family through exactly these calls::

    train_ds, _ = adapter.build_data(card, root, "train")      # augmented, card.dataset.train_split
    eval_ds, split = adapter.build_data(card, root, "eval")    # deterministic, card.dataset.split
    model = adapter.build_model(backbone, card)                # nn.Module with .backbone
    losses = adapter.loss(model, batch)                        # dict of scalars incl. "loss"
    preds = adapter.predict(model, batch, card)                # list of dicts, each with "index"
    adapter.write_predictions(all_preds, split, card, path)    # the score-compatible file
    metrics = adapter.score(path, split, card)                 # fractions in [0, 1]

The last two, and the eval split ``build_data(..., "eval")`` returns, belong to the family's
evaluator (``hcbench.families.base.Evaluator``): an adapter delegates them to it, so ``run``,
``submit validate --rescore`` and ``hcbench score`` share one predictions codec and one metric
binding per family.

Every dataset item is a dict holding ``"index"`` (the sample's position in ``split.samples``)
so that predictions gathered from several ranks can be de-duplicated and ordered. Metrics
are always computed *from the written predictions file*, so re-scoring a submission gives
the same numbers by construction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from torch import nn
from torch.utils.data import Dataset, Sampler

from hcbench.backbones.features import Backbone
from hcbench.cards import TaskCard
from hcbench.data.types import DatasetSplit


@runtime_checkable
class TaskAdapter(Protocol):
    family: str
    predictions_suffix: str  # ".json" or ".npz": the predictions file type

    def build_data(self, card: TaskCard, root: Path | None, role: str, *, limit: int | None = None
                   ) -> tuple[Dataset, DatasetSplit]: ...

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]: ...

    def train_sampler(self, dataset: Dataset, card: TaskCard, seed: int) -> Sampler | None: ...

    def build_model(self, backbone: Backbone, card: TaskCard) -> nn.Module: ...

    def loss(self, model: nn.Module, batch: dict[str, Any]) -> dict[str, Any]: ...

    def predict(self, model: nn.Module, batch: dict[str, Any], card: TaskCard) -> list[dict[str, Any]]: ...

    def write_predictions(self, predictions: list[dict[str, Any]], split: DatasetSplit, card: TaskCard,
                          path: Path) -> Path: ...

    def score(self, path: Path, split: DatasetSplit, card: TaskCard) -> dict[str, float]: ...


def split_name(card: TaskCard, role: str) -> str:
    """The dataset split a run reads for ``role``: ``train`` -> the card's ``train_split``
    (default ``train``), ``eval`` -> its ``split``. Never trains on the evaluation split."""
    if role == "train":
        return card.dataset.train_split or "train"
    if role == "eval":
        return card.dataset.split
    raise ValueError(f"role must be 'train' or 'eval', got {role!r}")


def role_split(card: TaskCard, root: Path | None, role: str, evaluator: Any, limit: int | None = None
               ) -> DatasetSplit:
    """The split a run reads for ``role``: ``eval`` -> the family evaluator's split (the one re-scoring
    and ``hcbench score`` read), ``train`` -> the card's training split through its reader."""
    if role == "eval":
        return evaluator.eval_split(card, root, limit)
    from hcbench.data.cards import read_split

    return read_split(card.dataset.name, split_name(card, role), root, limit=limit)


def split_root(split: DatasetSplit) -> Path | None:
    """The data root as seen from a split: the common folder above its annotation files/folders."""
    from hcbench.families.evaluator import split_root as root_of

    return root_of(split)


def get_adapter(family: str) -> TaskAdapter:
    """The adapter of a registered task family (``Family.adapter``, imported on first use)."""
    from hcbench.families.base import get_family

    return get_family(family).get_adapter()
