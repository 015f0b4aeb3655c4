"""The human-parsing family: typed card options, label-map checks, synthetic data.

Model side: :mod:`hcbench.adapters.parsing`; predictions and scoring: :mod:`hcbench.families.parsing_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.types import ParsingMeta, ParsingSample
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class ParsingAdapterOptions(OptionsModel):
    head: Literal["fpn"] = "fpn"
    pyramid_channels: int = Field(256, gt=0)
    decoder_channels: int = Field(256, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)


class ParsingAugment(OptionsModel):
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    keep_ratio: bool = True


class ParsingEvalOptions(OptionsModel):
    """No options: the classes, ignore value and id remapping come from the dataset card."""


def dataset_meta(card: Any) -> ParsingMeta:
    lm = tuple(sorted(card.label_map.items())) if card.label_map else None
    return ParsingMeta(card.name, tuple(card.classes or ()), tuple(map(tuple, card.class_flip_pairs)), label_map=lm)


def check_image(sample: Any, meta: ParsingMeta, rec: str) -> list[str]:
    """The image and its label map decode, agree in size and hold only known class ids."""
    import numpy as np

    from hcbench.data.transforms.parsing import load_pair
    from hcbench.data.types import DataFormatError

    try:
        _, label = load_pair(sample, meta)
    except FileNotFoundError as e:
        return [f"{e} [record {rec}]"]
    except DataFormatError as e:
        return [str(e) if e.record is not None else f"{e} [record {rec}]"]
    values = np.unique(label)
    bad = values[(values >= meta.num_classes) & (values != meta.ignore_index)]
    if bad.size:
        after = " after the card's label_map" if meta.label_map is not None else ""
        return [f"{sample.label} [record {rec}]: label values {bad.tolist()} outside [0, {meta.num_classes})"
                f"{after} and not the ignore value {meta.ignore_index}"]
    return []


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.parsing import write_parsing

    return {}, write_parsing(root, counts, seed, keep)


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.preview import parsing_sheet

    for split, items in shown.items():
        parsing_sheet(items, folder / f"{name}_{split}.png")


FAMILY = Family(
    name="parsing",
    label="Parsing",
    order=20,
    description="human parsing (semantic part segmentation): mIoU, pixel and mean accuracy",
    metrics=(MetricKey("mIoU"), MetricKey("pixel_acc"), MetricKey("mean_acc"), MetricKey("IoU/*"),
             MetricKey("per_class_iou")),
    adapter="hcbench.adapters.parsing:ADAPTER",
    evaluator="hcbench.families.parsing_eval:ParsingEvaluator",
    adapter_options=ParsingAdapterOptions,
    eval_options=ParsingEvalOptions,
    augment_options=ParsingAugment,
    sample_type=ParsingSample,
    meta_type=ParsingMeta,
    dataset_requires=("classes",),
    dataset_meta=dataset_meta,
    check_image=check_image,
    synthetic=(SynthDataset("synth_parsing", {"smoke": {"train": 300, "val": 60},
                                              "small": {"train": 1400, "val": 270}},
                            write=write_synth, preview=preview_synth),),
    score_help="mIoU of PNG label maps (--gt/--pred: folders with the same relative names); with --card, "
               "--gt may be the dataset root and --pred the run's predictions .npz",
    score_args=(
        ScoreArg("--num-classes", "num_classes", type=int, help="number of classes (default: the card's dataset)"),
        ScoreArg("--ignore-index", "ignore_index", type=int, help="ignored label value (default 255)"),
    ),
)

FAMILIES.add(FAMILY.name, FAMILY)
