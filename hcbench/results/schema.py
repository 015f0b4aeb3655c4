"""The ``hcbench.result/1`` record: one JSON file per (backbone, card, tier, seed)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA = "hcbench.result/1"


class _Rec(BaseModel):
    # records may grow fields in later versions of hcbench; readers keep what they know
    model_config = ConfigDict(extra="allow")


class BackboneInfo(_Rec):
    spec: str
    checkpoint_sha256: str | None = None  # None for random init
    params: int = Field(ge=0)
    gflops: float | None = Field(None, ge=0)  # multiply-adds x 1e-9 at the card's input size


class CardInfo(_Rec):
    name: str
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    tier: Literal["full", "quick", "smoke"]
    family: str


class DatasetInfo(_Rec):
    name: str
    split: str
    fingerprint: str


class RunInfo(_Rec):
    seed: int
    started: str
    wall_s: float = Field(ge=0)
    # process CPU time incl. reaped children (DataLoader workers); absent in records made before it existed
    cpu_s: float | None = Field(None, ge=0)
    device: str
    world_size: int = Field(1, ge=1)
    hcbench: str
    git_sha: str | None = None
    # sha256 of the source that computed the numbers (hcbench.codeprint); absent in older records
    code: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)


class PredictionsInfo(_Rec):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ResultRecord(_Rec):
    schema_: Literal["hcbench.result/1"] = Field(SCHEMA, alias="schema")
    backbone: BackboneInfo
    card: CardInfo
    dataset: DatasetInfo
    metrics: dict[str, float | None]  # None: undefined on this split (COCO's -1, e.g. APl with no large person)
    primary: str
    run: RunInfo
    predictions: PredictionsInfo | None = None
    status: Literal["ok", "failed"] = "ok"
    error: str | None = None

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    @field_validator("metrics")
    @classmethod
    def _fractions(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        for k, x in v.items():
            if x is None:
                continue
            if not isinstance(x, (int, float)) or math.isnan(x) or not (0.0 <= x <= 1.0):
                raise ValueError(f"metric {k!r}={x!r} is not a fraction in [0, 1]")
        return v

    @model_validator(mode="after")
    def _primary_present(self) -> ResultRecord:
        if self.status == "ok" and self.metrics.get(self.primary) is None:
            raise ValueError(f"primary metric {self.primary!r} missing from metrics {sorted(self.metrics)}")
        if self.status == "failed" and not self.error:
            raise ValueError("a failed record must carry its error")
        return self

    def to_json_dict(self) -> dict:
        return self.model_dump(mode="json", by_alias=True, exclude_none=False)

    @property
    def identity(self) -> tuple[str | None, str, str, int]:
        """Run identity: (checkpoint sha256, card sha256, tier, seed)."""
        return (self.backbone.checkpoint_sha256, self.card.sha256, self.card.tier, self.run.seed)
