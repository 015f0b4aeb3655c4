"""The person re-identification family: typed card options, camera/role checks, synthetic data.

Model side: :mod:`hcbench.adapters.reid`; predictions and scoring: :mod:`hcbench.families.reid_eval`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hcbench.data.types import ReIDMeta, ReIDSample
from hcbench.families.base import Family, MetricKey, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class ReIDAdapterOptions(OptionsModel):
    num_ids: int | None = Field(None, ge=1)  # required by the adapter; checked when the model is built
    num_instances: int = Field(4, ge=1)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    triplet_margin: float | None = 0.3
    id_loss_weight: float = 1.0
    triplet_weight: float = 1.0


class ReIDAugment(OptionsModel):
    flip: float = Field(0.5, ge=0, le=1)
    pad: int = Field(10, ge=0)
    random_erasing: float = Field(0.5, ge=0, le=1)


class ReIDEvalOptions(OptionsModel):
    feature: Literal["before_bn", "after_bn"] = "before_bn"
    metric: Literal["cosine", "euclidean"] = "cosine"


def dataset_meta(card: Any) -> ReIDMeta:
    return ReIDMeta(card.name, card.num_cameras or 0)


def check_records(card: Any, ds: Any) -> list[str]:
    from hcbench.data.check import record_name

    n = card.num_cameras or 0
    return [f"{s.image} [record {record_name(s, i)}]: camera {s.camid + 1} outside 1..{n}"
            for i, s in enumerate(ds.samples) if s.camid < 0 or (n and s.camid >= n)]


def check_split(card: Any, split: str, ds: Any) -> tuple[list[str], dict[str, int]]:
    """Query/gallery/train image counts against the card's ``options.role_sizes``."""
    counts: dict[str, int] = {}
    for s in ds.samples:
        counts[s.role] = counts.get(s.role, 0) + 1
    where = ds.files[0] if ds.files else card.name
    problems = [f"{where}: wrong count: split {split!r} has {counts.get(role, 0)} {role} images, the card expects {want}"
                for role, want in card.options.get("role_sizes", {}).get(split, {}).items()
                if counts.get(role, 0) != want]
    return problems, counts


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.reid import write_reid

    out = write_reid(root, counts["train_ids"], counts["imgs_per_id"], counts["test_ids"], seed, keep)
    roles: dict[str, int] = {}
    for r in out["records"]:
        role = r["role"] if r["pid"] >= 0 else "junk"
        roles[role] = roles.get(role, 0) + 1
    return {"images": roles}, out["shown"]


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.preview import reid_sheet

    reid_sheet(shown, folder / f"{name}.png")


FAMILY = Family(
    name="reid",
    label="ReID",
    order=40,
    description="person re-identification: mAP, CMC rank-k, mINP (Market-1501 protocol)",
    metrics=(MetricKey("mAP"), MetricKey("mINP"), MetricKey("rank*", description="CMC rank-k")),
    adapter="hcbench.adapters.reid:ADAPTER",
    evaluator="hcbench.families.reid_eval:ReIDEvaluator",
    adapter_options=ReIDAdapterOptions,
    eval_options=ReIDEvalOptions,
    augment_options=ReIDAugment,
    sample_type=ReIDSample,
    meta_type=ReIDMeta,
    dataset_meta=dataset_meta,
    check_records=check_records,
    check_split=check_split,
    synthetic=(SynthDataset("synth_reid", {"smoke": {"train_ids": 60, "imgs_per_id": 6, "test_ids": 30},
                                           "small": {"train_ids": 270, "imgs_per_id": 6, "test_ids": 130}},
                            write=write_synth, preview=preview_synth, unscaled=("imgs_per_id",)),),
    score_help="mAP/CMC/mINP from an .npz of query/gallery features, pids and camids (--pred); with --card "
               "and --gt (the dataset root) the identities are checked against the split",
    score_args=(ScoreArg("--metric", "metric", choices=("cosine", "euclidean"),
                         help="distance (default: the card's, else cosine)"),),
)

FAMILIES.add(FAMILY.name, FAMILY)
