"""Do a bundle's records tell one consistent story? Checks that catch relabelled results.

A maintainer re-scores predictions against ground truth, but a number can also be moved
to another name without touching its predictions: a record's backbone spec, parameter count or
seed edited, a metric deleted, a failed run given metrics, or one run copied under a second
backbone folder. Each check here compares a record with something it cannot edit in the same
stroke without the edit showing:

- the run's effective configuration (``<card>.config.json``) saved beside it by ``hcbench run``;
- the card: every metric the card lists must be present in an ``ok`` record;
- the architecture: parameters are recounted (on the ``meta`` device: no weights, no time) for
  specs that name an architecture (registered aliases, ``timm:``, or a record's ``architecture``);
- the other records: one run (its checkpoint, or its predictions file) under two backbone names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from hcbench.results.schema import ResultRecord


def _config_problems(rel: str, path: Path, rec: ResultRecord) -> list[str]:
    config = path.with_name(f"{path.stem}.config.json")
    if not config.is_file():
        return []
    try:
        cfg = json.loads(config.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return [f"{rel}: its config {config.name} is not valid JSON: {e}"]
    if not isinstance(cfg, dict):
        return [f"{rel}: its config {config.name} is not a JSON object"]
    out = []
    for key, ours in (("backbone", rec.backbone.spec), ("seed", rec.run.seed), ("card_sha256", rec.card.sha256)):
        if key in cfg and cfg[key] != ours:
            out.append(f"{rel}: record says {key}={ours!r}, the run's config {config.name} says {cfg[key]!r} "
                       "(relabelled?)")
    tier = (cfg.get("card") or {}).get("tier") if isinstance(cfg.get("card"), dict) else None
    if tier is not None and tier != rec.card.tier:
        out.append(f"{rel}: record says tier={rec.card.tier!r}, the run's config says {tier!r} (relabelled?)")
    return out


def _metric_presence(rel: str, rec: ResultRecord, card_metrics: list[str] | None) -> list[str]:
    if rec.status == "failed":
        kept = sorted(k for k, v in rec.metrics.items() if v is not None)
        return [f"{rel}: a failed record carries metrics {kept}"] if kept else []
    if card_metrics is None:
        return []
    missing = [m for m in card_metrics if m not in rec.metrics]
    return [f"{rel}: card {rec.card.name!r} metric(s) {missing} missing from the record"] if missing else []


def _architecture(rec: ResultRecord) -> str | None:
    """The architecture whose parameter count a record's ``params`` must equal, when known."""
    declared = getattr(rec.backbone, "architecture", None)  # records may carry it for file:/student: specs
    if isinstance(declared, str) and declared:
        return declared
    spec = rec.backbone.spec
    return None if spec.startswith(("file:", "student:")) else spec


@cache
def _params_of(arch: str, height: int, width: int) -> int | None:
    import torch

    from hcbench.backbones import build_backbone
    from hcbench.backbones.stats import count_params

    try:
        with torch.device("meta"):
            model = build_backbone(arch, (height, width))
    except Exception:  # an architecture this installation cannot build: nothing to compare against
        return None
    return count_params(model)


def _params_problem(rel: str, rec: ResultRecord, input_hw: tuple[int, int] | None) -> list[str]:
    arch = _architecture(rec)
    if arch is None or input_hw is None:
        return []
    expected = _params_of(arch, *input_hw)
    if expected is None or expected == rec.backbone.params:
        return []
    return [f"{rel}: backbone {rec.backbone.spec!r} has {expected} parameters at the card's input size, "
            f"the record says {rec.backbone.params} (relabelled backbone?)"]


def _duplicate_runs(items: Iterable[tuple[str, ResultRecord]]) -> list[str]:
    seen_run: dict[tuple, tuple[str, str]] = {}
    seen_pred: dict[str, tuple[str, str]] = {}
    out = []
    for rel, rec in items:
        spec = rec.backbone.spec
        if rec.backbone.checkpoint_sha256:
            key = (rec.backbone.checkpoint_sha256, rec.card.sha256, rec.card.tier, rec.run.seed)
            if key in seen_run and seen_run[key][1] != spec:
                out.append(f"{rel}: the same run (checkpoint, card, tier, seed) as {seen_run[key][0]} "
                           f"under another backbone name ({spec!r} vs {seen_run[key][1]!r})")
            seen_run.setdefault(key, (rel, spec))
        if rec.predictions is not None:
            sha = rec.predictions.sha256
            if sha in seen_pred and seen_pred[sha][1] != spec:
                out.append(f"{rel}: its predictions file is byte-identical to {seen_pred[sha][0]}'s "
                           f"(backbone {seen_pred[sha][1]!r}): one run under two backbone names")
            seen_pred.setdefault(sha, (rel, spec))
    return out


def provenance_problems(records: list[tuple[str, Path, ResultRecord]]) -> list[str]:
    """Every inconsistency among ``(bundle-relative name, path, record)`` triples (empty: none)."""
    from hcbench.cards import CardError, get_card, resolve

    problems: list[str] = []
    for rel, path, rec in records:
        try:
            card = resolve(get_card(rec.card.name), rec.card.tier)
            card_metrics, hw = list(card.eval.metrics), (card.input.height, card.input.width)
        except (CardError, ValueError):
            card_metrics, hw = None, None  # the unknown card is reported by the card checks
        problems += _config_problems(rel, path, rec)
        problems += _metric_presence(rel, rec, card_metrics)
        problems += _params_problem(rel, rec, hw)
    problems += _duplicate_runs((rel, rec) for rel, _, rec in records)
    return problems
