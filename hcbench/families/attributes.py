"""The pedestrian-attribute family: typed card options, label checks, synthetic data.

Model side: :mod:`hcbench.adapters.attributes`; predictions and scoring: :mod:`hcbench.families.attributes_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.types import AttributeMeta, AttributeSample
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class AttributeAdapterOptions(OptionsModel):
    logit_bn: bool = True
    loss_weighting: Literal["exp_ratio", "none"] = "exp_ratio"


class AttributeAugment(OptionsModel):
    flip: float = Field(0.5, ge=0, le=1)
    pad: int = Field(10, ge=0)


class AttributeEvalOptions(OptionsModel):
    threshold: float = Field(0.5, gt=0, lt=1)


def dataset_meta(card: Any) -> AttributeMeta:
    return AttributeMeta(card.name, tuple(card.attributes or ()))


def check_records(card: Any, ds: Any) -> list[str]:
    import numpy as np

    from hcbench.data.check import record_name

    where = ds.files[0] if ds.files else card.name
    a = len(card.attributes or [])
    out = []
    for i, s in enumerate(ds.samples):
        lab = np.asarray(s.labels)
        if lab.shape != (a,):
            out.append(f"{where} [record {record_name(s, i)}]: {lab.size} attribute labels, the card {card.name!r} lists {a}")
        elif not np.isin(lab, (0, 1)).all():
            out.append(f"{where} [record {record_name(s, i)}]: labels {sorted(set(lab.tolist()))} are not all 0/1")
    return out


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.attributes import ATTRIBUTES, write_attributes

    out = write_attributes(root, counts, seed, keep * 2)
    rate = dict(zip(ATTRIBUTES, [round(float(v), 3) for v in out["labels"].mean(0)], strict=True))
    return {"positive_rate": rate}, out["shown"]


def write_synth_zs(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.attributes import write_attributes_zs

    out = write_attributes_zs(root, counts, seed, keep * 2)
    ids = {k: len(set(out["pids"][v].tolist())) for k, v in out["partition"].items()}
    return {"identities": ids}, out["shown"]


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.attributes import ATTRIBUTES
    from hcbench.synth.preview import attribute_sheet

    for split, items in shown.items():
        attribute_sheet(items, ATTRIBUTES, folder / f"{name}_{split}.png")


FAMILY = Family(
    name="attributes",
    label="Attributes",
    order=50,
    description="pedestrian attribute recognition: label-based mA, instance accuracy/precision/recall/F1",
    metrics=(MetricKey("mA"), MetricKey("accuracy"), MetricKey("precision"), MetricKey("recall"), MetricKey("F1")),
    adapter="hcbench.adapters.attributes:ADAPTER",
    evaluator="hcbench.families.attributes_eval:AttributeEvaluator",
    adapter_options=AttributeAdapterOptions,
    eval_options=AttributeEvalOptions,
    augment_options=AttributeAugment,
    sample_type=AttributeSample,
    meta_type=AttributeMeta,
    dataset_requires=("attributes",),
    dataset_meta=dataset_meta,
    check_records=check_records,
    synthetic=(SynthDataset("synth_attr", {"smoke": {"train": 600, "val": 100, "test": 200},
                                           "small": {"train": 2700, "val": 450, "test": 900}},
                            write=write_synth, preview=preview_synth),
               SynthDataset("synth_attr_zs", {"smoke": {"train_ids": 16, "val_ids": 4, "test_ids": 8, "imgs_per_id": 3},
                                              "small": {"train_ids": 120, "val_ids": 20, "test_ids": 40,
                                                        "imgs_per_id": 4}},
                            write=write_synth_zs, preview=preview_synth, unscaled=("imgs_per_id",))),
    score_help="mA and instance metrics of N x A scores (--pred .npy, or a run's .npz) against N x A 0/1 labels "
               "(--gt .npy, or with --card the dataset root)",
    score_args=(ScoreArg("--threshold", "threshold", type=float, help="decision threshold (default: the card's, else 0.5)"),),
)

FAMILIES.add(FAMILY.name, FAMILY)
