"""The text-to-image person retrieval family (CUHK-PEDES, ICFG-PEDES, RSTPReid; IRRA protocol):
typed card options, split counts for ``data check``, the synthetic ``synth_t2i`` set.

Model side: :mod:`hcbench.adapters.t2i` (+ :mod:`hcbench.adapters.t2i_text`); predictions and
scoring: :mod:`hcbench.families.t2i_eval`; readers: :mod:`hcbench.data.readers.t2i`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from hcbench.data.readers.t2i import T2IMeta, T2ISample
from hcbench.families.base import Family, MetricKey, NoOptions, OptionsModel, ScoreArg, SynthDataset
from hcbench.registry import FAMILIES


class T2ITextOptions(OptionsModel):
    """The CLIP text transformer (defaults: OpenAI ViT-B/16's text tower)."""

    layers: int = Field(12, ge=1)
    width: int = Field(512, ge=8)
    heads: int = Field(8, ge=1)
    context_length: int = Field(77, ge=3, le=77)
    checkpoint: str | None = None  # "file:PATH" of an OpenAI-layout state dict; None = random init

    @field_validator("checkpoint")
    @classmethod
    def _file_spec(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("file:"):
            raise ValueError(f"a text checkpoint is 'file:PATH' (.safetensors or .pt/.pth), got {v!r}")
        return v


class T2IAdapterOptions(OptionsModel):
    num_ids: int | None = Field(None, ge=1)  # training identities; required when the model is built
    embed_dim: int = Field(512, ge=1)
    temperature: float = Field(0.02, gt=0)
    sdm_loss_weight: float = Field(1.0, ge=0)
    id_loss_weight: float = Field(1.0, ge=0)
    mlm: bool = False
    mlm_loss_weight: float = Field(1.0, ge=0)
    cmt_depth: int = Field(4, ge=1)
    feature_norm: Literal["none", "batchnorm"] = "none"  # batchnorm: not IRRA, for random-init towers
    text: T2ITextOptions = T2ITextOptions()


class T2IAugment(OptionsModel):
    flip: float = Field(0.5, ge=0, le=1)
    pad: int = Field(10, ge=0)
    random_erasing: float = Field(0.5, ge=0, le=1)


def dataset_meta(card: Any) -> T2IMeta:
    return T2IMeta(card.name)


def check_records(card: Any, ds: Any) -> list[str]:
    """A caption longer than 77 CLIP tokens is truncated (as IRRA does): not a problem, so nothing here
    beyond what the reader already refuses; duplicate image paths are."""
    seen: dict[str, int] = {}
    out = []
    where = ds.files[0] if ds.files else card.name
    for s in ds.samples:
        if s.file_path in seen:
            out.append(f"{where} [record {s.image_id}]: image {s.file_path!r} already listed by record "
                       f"{seen[s.file_path]}")
        seen.setdefault(s.file_path, s.image_id)
    return out


def check_split(card: Any, split: str, ds: Any) -> tuple[list[str], dict[str, int]]:
    """Identity and caption counts against the card's ``options.counts[split]`` (images are the
    split ``size``)."""
    from hcbench.data.readers.t2i import split_counts

    counts = split_counts(ds.samples)
    where = ds.files[0] if ds.files else card.name
    want = card.options.get("counts", {}).get(split, {})
    problems = [f"{where}: wrong count: split {split!r} has {counts.get(k, 0):,} {k}, the card expects {v:,}"
                for k, v in want.items() if counts.get(k, 0) != v]
    return problems, {"identities": counts["identities"], "captions": counts["captions"]}


def write_synth(root: Path, counts: dict[str, int], seed: int, keep: int) -> tuple[dict, Any]:
    from hcbench.synth.t2i import write_t2i_synth

    out = write_t2i_synth(root, counts["train_ids"], counts["imgs_per_id"], counts["test_ids"],
                          counts["test_imgs_per_id"], seed, keep)
    return {"splits": out["counts"]}, out["shown"]


def preview_synth(shown: Any, folder: Path, name: str) -> None:
    from hcbench.synth.t2i import t2i_sheet

    for split, items in shown.items():
        if items:
            t2i_sheet(items, folder / f"{name}_{split}.png")


FAMILY = Family(
    name="t2i",
    label="Text-to-image",
    order=45,
    description="text-to-image person retrieval: Rank-1/5/10, mAP, mINP over all test captions x images",
    metrics=(MetricKey("rank*", description="text->image Rank-k"), MetricKey("mAP"), MetricKey("mINP")),
    adapter="hcbench.adapters.t2i:T2IAdapter",
    evaluator="hcbench.families.t2i_eval:T2IEvaluator",
    adapter_options=T2IAdapterOptions,
    eval_options=NoOptions,
    augment_options=T2IAugment,
    sample_type=T2ISample,
    meta_type=T2IMeta,
    dataset_meta=dataset_meta,
    check_records=check_records,
    check_split=check_split,
    synthetic=(SynthDataset("synth_t2i", {
        "smoke": {"train_ids": 80, "imgs_per_id": 4, "test_ids": 40, "test_imgs_per_id": 3},
        "small": {"train_ids": 400, "imgs_per_id": 4, "test_ids": 150, "test_imgs_per_id": 3}},
        write=write_synth, preview=preview_synth, unscaled=("imgs_per_id", "test_imgs_per_id")),),
    score_help="Rank-1/5/10, mAP, mINP from an .npz of text_feats/image_feats/text_pids/image_pids (--pred); "
               "with --card, --gt is the dataset root and the identities are checked against the split; "
               "without, --gt may be the annotation JSON (checked against its --split records)",
    score_args=(ScoreArg("--split", "split", help="without --card: the split of the --gt annotation file "
                         "the features belong to (default test)"),),
)

FAMILIES.add(FAMILY.name, FAMILY)
