"""The apparel family (Fashionpedia): instance masks of garments and garment parts with fine-grained
attributes, scored with Fashionpedia's AP under the IoU constraint and under IoU + attribute F1.

Model side: :mod:`hcbench.adapters.fashion` (Mask R-CNN + RoI attribute head on the shared
pyramid); predictions and scoring: :mod:`hcbench.families.fashion_eval`; the metric:
:mod:`hcbench.metrics.fashionpedia`; the reader: :mod:`hcbench.data.readers.fashionpedia`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.readers.fashionpedia import FashionMeta, FashionSample, meta_of
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class FashionAdapterOptions(OptionsModel):
    detector: Literal["mask_rcnn"] = "mask_rcnn"
    pyramid_channels: int = Field(256, gt=0)
    pyramid_scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    anchor_sizes: list[float] | None = None  # one per pyramid level; default 8 x its stride
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_top_n_train: int = Field(2000, gt=0)
    rpn_post_nms_top_n_train: int = Field(2000, gt=0)
    rpn_pre_nms_top_n_test: int = Field(1000, gt=0)
    rpn_post_nms_top_n_test: int = Field(1000, gt=0)
    rpn_batch_size_per_image: int = Field(256, gt=0)
    box_batch_size_per_image: int = Field(512, gt=0)
    box_positive_fraction: float = Field(0.25, gt=0, le=1)  # of the RoIs sampled per image
    box_fg_iou_thresh: float = Field(0.5, gt=0, le=1)  # RoIs from here up are a garment's positives
    box_bg_iou_thresh: float = Field(0.5, ge=0, le=1)  # below: background; in between: not sampled
    box_head_dim: int = Field(1024, gt=0)
    box_class_agnostic: bool = False  # one box regression per RoI shared by all categories (CLS_AGNOSTIC_BBOX_REG)
    mask_head_channels: int = Field(256, gt=0)
    mask_head_convs: int = Field(4, ge=1)
    mask_class_agnostic: bool = False  # one mask per RoI shared by all categories (detectron2's CLS_AGNOSTIC_MASK)
    attribute_loss_weight: float = Field(1.0, ge=0)


class FashionAugment(OptionsModel):
    """Training resize: fit into a square of side ``scale`` x r, r ~ U(``ratio_range``), then crop to
    at most ``scale`` a side (large-scale jitter); horizontal flip with probability ``flip``."""

    scale: int | None = Field(None, gt=0)  # default: input.height
    ratio_range: tuple[float, float] = (1.0, 1.0)
    crop: bool = True
    flip: float = Field(0.5, ge=0, le=1)


class FashionEvalOptions(OptionsModel):
    score_thresh: float = Field(0.05, ge=0, le=1)
    nms_thresh: float = Field(0.5, gt=0, le=1)
    detections_per_img: int = Field(100, gt=0)
    mask_thresh: float = Field(0.5, gt=0, lt=1)
    attribute_threshold: float = Field(0.5, gt=0, lt=1)
    # category ids scored with the F1 constraint (default: the dataset card's options.attribute_categories)
    attribute_categories: list[int] | None = None


def dataset_meta(card: Any) -> FashionMeta:
    return meta_of(card)


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.fashion import write_fashion

    return write_fashion(root, counts, seed, keep)


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.fashion import fashion_sheet

    for split, items in shown.items():
        fashion_sheet(items, folder / f"{name}_{split}.png")


_KINDS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")

FAMILY = Family(
    name="fashion",
    label="Fashion",
    order=70,
    description="apparel instance segmentation with attributes: Fashionpedia mask/box AP under IoU and IoU + F1",
    metrics=tuple(MetricKey(f"{p}_{k}{s}") for p in ("mask", "box") for k in _KINDS for s in ("", "_f1"))
    + tuple(MetricKey(f"{p}_AP_f1_F1{t}") for p in ("mask", "box") for t in (50, 75)),
    adapter="hcbench.adapters.fashion:FashionAdapter",
    evaluator="hcbench.families.fashion_eval:FashionEvaluator",
    adapter_options=FashionAdapterOptions,
    eval_options=FashionEvalOptions,
    augment_options=FashionAugment,
    sample_type=FashionSample,
    meta_type=FashionMeta,
    dataset_requires=("classes",),
    dataset_meta=dataset_meta,
    synthetic=(SynthDataset("synth_fashion", {"smoke": {"train": 200, "val": 40},
                                              "small": {"train": 1200, "val": 200}},
                            write=write_synth, preview=preview_synth),),
    score_help="Fashionpedia AP (masks and boxes; IoU, and IoU + attribute F1) of COCO results with "
               "segmentation RLE and attribute_ids (--pred) against a Fashionpedia annotation file (--gt); "
               "with --card, --gt is the dataset root",
    score_args=(ScoreArg("--attribute-categories", "attribute_categories", type=str,
                         help="comma-separated category ids scored with the attribute-F1 constraint "
                              "(default: Fashionpedia's 18 categories with attributes)"),),
)

FAMILIES.add(FAMILY.name, FAMILY)
