"""``hcbench inspect CKPT``: what a checkpoint is, which card fits it, and how it loads.

Reads the file safely, names its key layout, proposes a sidecar card (the release
architecture its keys point to, with depth/width/grid read from the tensors when they differ
from the release's) and loads it into that architecture non-strictly to report what was
loaded, dropped, missing, unexpected and resampled. Nothing is trained or written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from hcbench.backbones.card import BackboneCard, find_card

_PLAIN = {192: "vit_tiny", 384: "vit_small", 768: "vit_base"}


def _shape_facts(sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for k in ("patch_embed.proj.weight", "patch_embed.projection.weight"):
        if k in sd:
            facts["width"] = int(sd[k].shape[0])
            facts["patch_size"] = int(sd[k].shape[-1])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.", k))}
    if blocks:
        facts["depth"] = max(blocks) + 1
    stages = {}
    for k in sd:
        if (m := re.match(r"^layers\.(\d+)\.blocks\.(\d+)\.", k)):
            stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    if stages:
        facts["depths"] = [stages[i] for i in sorted(stages)]
    facts["cls_token"] = "cls_token" in sd
    if "pos_embed" in sd:
        facts["pos_embed_slots"] = int(sd["pos_embed"].shape[-2]) if sd["pos_embed"].ndim == 3 else None
    return facts


def suggest_card(layout: str, sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """A sidecar card for these tensors (as a mapping, ready for ``yaml.safe_dump``)."""
    from hcbench.backbones.layouts import suggest_architecture
    from hcbench.backbones.releases import RELEASES

    facts = _shape_facts(sd)
    names = suggest_architecture(layout, sd)
    card: dict[str, Any] = {}
    if names:
        rel = RELEASES[names[0]]
        card["architecture"] = names[0]
        if facts.get("depth") and rel.params.get("depth") not in (None, facts["depth"]):
            card["depth"] = facts["depth"]
        if facts.get("depths") and rel.params.get("depths") not in (None, facts["depths"]):
            card["depths"] = facts["depths"]
    else:
        width = facts.get("width")
        plain = _PLAIN.get(width) if facts.get("depth") == 12 and facts.get("patch_size") == 16 else None
        card["architecture"] = plain or "timm:<the timm model these keys come from>"
    return card


def inspect_checkpoint(path: str | Path, architecture: str | None = None,
                       img_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Layout, suggested card and load report of a checkpoint (see the module docstring)."""
    from hcbench.backbones import BackboneSpecError, build_from_card
    from hcbench.backbones.checkpoint import load_into, prepare_state_dict, read_state_dict
    from hcbench.backbones.releases import RELEASES
    from hcbench.backbones.validate import check_architecture

    path = Path(path)
    card = find_card(path) if path.is_file() else None
    raw, meta = read_state_dict(path, card.container if card else None)
    sd, dropped, layout, remapped = prepare_state_dict(raw)
    from hcbench.backbones.layouts import suggest_architecture

    suggested = suggest_card(layout, sd)
    out: dict[str, Any] = {"path": str(path), "tensors": len(raw), "layout": layout, "remapped": remapped,
                           "card": card.model_dump(exclude_none=True) if card else None,
                           "suggested_card": suggested,
                           "alternatives": suggest_architecture(layout, sd)[1:]}
    if architecture:
        use = BackboneCard(architecture=architecture)
    elif card is not None:
        use = card
    else:
        arch = suggested["architecture"]
        if arch.startswith("timm:<"):
            out["report"] = None
            out["note"] = "no card and no recognised layout: name the architecture (--architecture)"
            return out
        use = BackboneCard.model_validate(suggested)
    try:
        check_architecture(use.architecture)
    except BackboneSpecError as e:  # the layout and the suggested card above are what fixes it
        out["report"] = None
        out["note"] = f"no load report: {e} (correct the card, see the suggestion above, or pass --architecture)"
        return out
    rel = RELEASES.get(use.architecture)
    size = img_size or (rel.input_size if rel else (256, 192))
    model = build_from_card(use, size, where=str(path))
    pe = use.pos_embed
    report = load_into(model, path, strict=False, pos_grid=use.checkpoint_grid, container=use.container,
                       pos_resize=pe.resize if pe else "bicubic", pos_antialias=pe.antialias if pe else False,
                       report_mismatch=True)
    out["architecture"] = use.architecture
    out["input_size"] = list(size)
    out["report"] = report.to_dict()
    return out
