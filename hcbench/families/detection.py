"""The pedestrian-detection family: typed card options, box checks, synthetic data.

Model side: :mod:`hcbench.adapters.detection`; predictions and scoring (CrowdHuman AP/MR-2/JI with
clipping, CityPersons MR-2 setups): :mod:`hcbench.families.detection_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.types import DetectionMeta, DetectionSample
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class DetectionAdapterOptions(OptionsModel):
    detector: Literal["fcos"] = "fcos"
    pyramid_channels: int = Field(256, gt=0, multiple_of=32)
    pyramid_scales: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)
    head_convs: int = Field(4, ge=0)
    center_sampling_radius: float = 1.5
    ignore_iof: float = Field(0.5, ge=0, le=1)
    clip_boxes: bool = True
    train_labels: list[int] | None = None
    train_min_height: float = Field(0.0, ge=0)
    train_min_visibility: float = Field(0.0, ge=0, le=1)


class DetectionAugment(OptionsModel):
    flip: float = Field(0.5, ge=0, le=1)
    scales: list[int] = Field(default_factory=list)


class DetectionEvalOptions(OptionsModel):
    """``protocol``: ``crowdhuman`` (AP, MR-2, JI; boxes clipped to the image) or ``citypersons``
    (MR-2 for ``setup`` plus ``MR-2_<s>`` for each of ``setups``); the detector's post-processing."""

    protocol: Literal["crowdhuman", "citypersons"] = "crowdhuman"
    setup: str = "reasonable"
    setups: list[str] = Field(default_factory=list)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = Field(100, gt=0)
    topk_candidates: int = Field(1000, gt=0)


def dataset_meta(card: Any) -> DetectionMeta:
    return DetectionMeta(card.name)


def check_records(card: Any, ds: Any) -> list[str]:
    import numpy as np

    from hcbench.data.check import counted, declared_size, record_name

    where = ds.files[0] if ds.files else card.name
    out = []
    negative: list[tuple[str, str]] = []
    far: list[tuple[str, str]] = []
    for i, s in enumerate(ds.samples):
        size = declared_size(s)
        for key in ("boxes", "visible", "ignore"):
            b = np.asarray(getattr(s, key))
            if b.ndim != 2 or b.shape[1] != 4 or not np.isfinite(b).all():
                out.append(f"{where} [record {record_name(s, i)}]: {key} has shape {b.shape} "
                           "or non-finite values (N x 4 expected)")
                continue
            neg = (b[:, 2] < 0) | (b[:, 3] < 0)
            if neg.any():
                j = int(np.flatnonzero(neg)[0])
                negative.append((record_name(s, i), f"{key}[{j}] = {b[j].tolist()}"))
            if size is not None and len(b):
                w, h = size  # a box entirely more than half the image beyond its border
                off = (b[:, 0] + b[:, 2] < -0.5 * w) | (b[:, 0] > 1.5 * w) | (b[:, 1] + b[:, 3] < -0.5 * h) | \
                    (b[:, 1] > 1.5 * h)
                if off.any():
                    j = int(np.flatnonzero(off)[0])
                    far.append((record_name(s, i), f"{key}[{j}] = {b[j].tolist()} in a {w}x{h} image"))
    out += counted(str(where), "box with a negative width or height", negative)
    out += counted(str(where), "box far outside the image", far)
    return out


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.detection import write_detection

    return {}, write_detection(root, counts, seed, keep)


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.preview import detection_sheet

    for split, items in shown.items():
        detection_sheet(items, folder / f"{name}_{split}.png")


FAMILY = Family(
    name="detection",
    label="Detection",
    order=30,
    description="pedestrian detection: AP@0.5, MR-2 and JI (CrowdHuman), MR-2 setups (CityPersons)",
    metrics=(MetricKey("AP"), MetricKey("JI"), MetricKey("MR-2", higher_is_better=False),
             MetricKey("MR-2*", higher_is_better=False, description="MR-2 of a CityPersons setup")),
    adapter="hcbench.adapters.detection:ADAPTER",
    evaluator="hcbench.families.detection_eval:DetectionEvaluator",
    adapter_options=DetectionAdapterOptions,
    eval_options=DetectionEvalOptions,
    augment_options=DetectionAugment,
    sample_type=DetectionSample,
    meta_type=DetectionMeta,
    dataset_meta=dataset_meta,
    check_records=check_records,
    synthetic=(SynthDataset("synth_det", {"smoke": {"train": 200, "val": 50}, "small": {"train": 900, "val": 220}},
                            write=write_synth, preview=preview_synth),),
    score_help="CrowdHuman AP/MR-2/JI of COCO-style boxes against an .odgt (--gt); with --card, the card's "
               "protocol (CityPersons: --gt is the dataset root)",
    score_args=(
        ScoreArg("--sizes", "sizes", type=Path,
                 help="image sizes for clipping: JSON {image_id: [width, height]} (default: read the images "
                      "from Images/ beside the odgt; scoring fails when neither is there)"),
        ScoreArg("--images", "images", type=Path, help="folder of the <ID>.jpg images (default: Images/ beside --gt)"),
    ),
)

FAMILIES.add(FAMILY.name, FAMILY)
