"""The pose family (top-down keypoints): typed card options, dataset checks, synthetic data.

The model side is :mod:`hcbench.adapters.pose`; the predictions file and its scoring are
:mod:`hcbench.families.pose_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.types import KeypointMeta, PoseInstance
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class PoseCodec(OptionsModel):
    """``adapter.codec``: ``udp_gaussian`` (UDP targets; refine ``dark`` (DARK-UDP) | ``none``) or
    ``msra_gaussian`` (MSRA targets; refine ``quarter`` | ``none``); see hcbench.adapters.pose_codec."""

    type: Literal["udp_gaussian", "msra_gaussian"] = "udp_gaussian"
    sigma: float = Field(2.0, gt=0)
    refine: Literal["dark", "none", "quarter"] = "dark"
    blur_kernel: int = Field(11, ge=1)


class PoseAdapterOptions(OptionsModel):
    """``adapter``: the ViTPose "simple" heatmap head (see :mod:`hcbench.adapters.pose`)."""

    head: Literal["heatmap"] = "heatmap"
    deconv_layers: int = Field(2, ge=0)
    deconv_channels: int = Field(256, gt=0)
    deconv_kernel: Literal[2, 3, 4] = 4
    final_kernel: int = Field(1, ge=1)
    heatmap_stride: int = Field(4, gt=0)
    loss_weight: float = 1.0
    codec: PoseCodec = PoseCodec()


class PoseAugment(OptionsModel):
    flip: bool = True
    half_body: float = Field(0.3, ge=0, le=1)
    scale: tuple[float, float] = (0.75, 1.25)
    rotate: float = 40.0
    rotate_prob: float = Field(0.6, ge=0, le=1)
    shift: float = 0.0
    padding: float = Field(1.25, gt=0)


class PoseEvalOptions(OptionsModel):
    """``eval.options``: OKS sigmas (values or ``coco|aic|crowdpose|mpii``; default the dataset
    card's), instance rescoring, OKS-NMS, PCKh/PCK thresholds, the CrowdPose protocol, backend."""

    sigmas: str | list[float] | None = None
    score_thr: float = 0.2
    nms: Literal["oks", "none"] = "oks"
    nms_thr: float = 0.9
    pckh_thr: float = Field(0.5, gt=0)
    pck_thr: float = Field(0.1, gt=0)
    crowd: bool = False
    backend: Literal["hcbench", "pycocotools", "faster-coco-eval"] = "hcbench"  # same numbers; hcbench is faster
    # COCO-WholeBody per-part AP/AR (body/foot/face/hands/whole body; also on when the dataset
    # card says iou_type: keypoints_wholebody) and AP per scene category (Human-Art)
    wholebody: bool = False
    per_category: bool = False


def dataset_meta(card: Any) -> KeypointMeta:
    k = card.keypoints
    return KeypointMeta(card.name, tuple(k.names), tuple(map(tuple, k.flip_pairs)), tuple(map(tuple, k.skeleton)),
                        tuple(k.sigmas), tuple(k.upper_body), tuple(k.lower_body))


def check_records(card: Any, ds: Any) -> list[str]:
    import numpy as np

    from hcbench.data.check import counted, declared_size, record_name

    where = ds.files[0] if ds.files else card.name
    k = len(card.keypoints.names) if card.keypoints else 0
    out = []
    bad_v: list[tuple[str, str]] = []
    far: list[tuple[str, str]] = []
    for i, s in enumerate(ds.samples):
        kp = np.asarray(s.keypoints, dtype=np.float64)
        if kp.ndim != 2 or kp.shape != (k, 3):
            out.append(f"{where} [record {record_name(s, i)}]: keypoints have shape {kp.shape}, "
                       f"the card {card.name!r} defines {k} keypoints ({k} x 3 expected)")
            continue
        v = kp[:, 2]
        odd = ~np.isin(v, (0.0, 1.0, 2.0))
        if odd.any():
            j = int(np.flatnonzero(odd)[0])
            bad_v.append((record_name(s, i), f"keypoint {j} has v={v[j]:g}"))
        size = declared_size(s)
        if size is not None:
            # a labelled point more than half the image beyond its border: a wrong size or a broken label
            w, h = size
            x, y = kp[:, 0], kp[:, 1]
            out_of = (v > 0) & ((x < -0.5 * w) | (x > 1.5 * w) | (y < -0.5 * h) | (y > 1.5 * h))
            if out_of.any():
                j = int(np.flatnonzero(out_of)[0])
                far.append((record_name(s, i), f"keypoint {j} at ({x[j]:g}, {y[j]:g}) in a {w}x{h} image"))
    out += counted(str(where), "keypoint visibility outside {0, 1, 2}", bad_v)
    out += counted(str(where), "labelled keypoint far outside the image (more than half its size beyond the border)",
                   far)
    return out


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.pose import write_pose

    return {}, write_pose(root, counts, seed, keep)


def write_synth_wholebody(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.pose import write_wholebody

    return {}, write_wholebody(root, counts, seed, keep)


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.preview import pose_sheet

    for split, items in shown.items():
        pose_sheet(items, folder / f"{name}_{split}.png")


FAMILY = Family(
    name="pose",
    label="Pose",
    order=10,
    description="top-down keypoint estimation: OKS AP/AR (COCO, AIC, CrowdPose), PCKh (MPII), PCK",
    metrics=(
        *(MetricKey(k) for k in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl",
                                 "APeasy", "APmedium", "APhard", "PCK")),
        MetricKey("PCKh*", description="MPII PCKh at the card's threshold; PCKh@0.1"),
        MetricKey("AP*"), MetricKey("AR*"),
        *(MetricKey(f"{part}_*", description="COCO-WholeBody per-part OKS AP/AR") for part in
          ("body", "foot", "face", "lefthand", "righthand", "wholebody")),
    ),
    adapter="hcbench.adapters.pose:ADAPTER",
    evaluator="hcbench.families.pose_eval:PoseEvaluator",
    adapter_options=PoseAdapterOptions,
    eval_options=PoseEvalOptions,
    augment_options=PoseAugment,
    sample_type=PoseInstance,
    meta_type=KeypointMeta,
    dataset_requires=("keypoints",),
    dataset_meta=dataset_meta,
    check_records=check_records,
    synthetic=(SynthDataset("synth_pose", {"smoke": {"train": 400, "val": 100}, "small": {"train": 1800, "val": 400}},
                            write=write_synth, preview=preview_synth),
               SynthDataset("synth_wholebody", {"smoke": {"train": 64, "val": 16}, "small": {"train": 450, "val": 100}},
                            write=write_synth_wholebody, preview=preview_synth)),
    score_help="OKS AP/AR of COCO keypoint results (--gt: COCO keypoint json), PCKh/PCK with --card",
    score_args=(
        ScoreArg("--sigmas", "sigmas", help="coco|aic|crowdpose|mpii|FILE (default: the card's, else coco)"),
        ScoreArg("--crowd", "crowd", flag_only=True,
                 help="CrowdPose protocol: maxDets 20, no area ranges, AP easy/medium/hard by crowdIndex "
                      "(default: the card's; sigmas default to crowdpose)"),
        ScoreArg("--wholebody", "wholebody", flag_only=True,
                 help="COCO-WholeBody: --gt is a coco_wholebody_*_v1.0.json; AP/AR per part and whole body"),
        ScoreArg("--backend", "backend", choices=("hcbench", "pycocotools", "faster-coco-eval"),
                 help="OKS evaluation backend (default: the card's, else hcbench)"),
    ),
)

FAMILIES.add(FAMILY.name, FAMILY)
