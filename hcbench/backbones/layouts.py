"""Checkpoint key layouts of the field's releases: detection, conversion to the model's names,
and the check that a card's architecture fits the layout.

Layouts (named from the raw keys): ``mmcv-swin`` (SOLIDER; ``stages.i.blocks.j.attn.w_msa``),
``timm-swin``, ``path`` (``module.backbone_module.``), ``dpal`` (pretraining-only
``inter_norm.*``; SAIP students too), ``mae`` (``decoder_*``; HAP), ``vitpose`` (``last_norm``),
``openmmlab-vit`` (mmseg/mmpretrain/Sapiens ``layers.N.ln1``), ``transreid`` (``base.*``) and
``timm``. Conversions rename keys only, except mmcv Swin's patch merging, whose weights are
reordered from ``nn.Unfold``'s channel order to the original Swin's.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from hcbench.backbones.errors import CheckpointError

PREFIXES = ("module.", "backbone.", "backbone_module.", "base.", "student.", "encoder.")


def strip_prefixes(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Remove wrapper prefixes; where keys live under a model prefix, drop the rest."""
    dropped: list[str] = []
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            inside = [k for k in sd if k.startswith(prefix)]
            if not inside:
                continue
            if prefix == "base." and len(inside) < len(sd) / 2:
                continue  # TransReID keeps the whole ViT under base.; a stray base.* key is not a wrapper
            if prefix != "module." and len(inside) < len(sd):
                dropped += [k for k in sd if not k.startswith(prefix)]
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            changed = True
    return sd, dropped


def detect_layout(raw_keys: list[str] | set[str]) -> str:
    """Name the key layout of a checkpoint from its (raw, unstripped) keys."""
    keys = list(raw_keys)

    def has(pat: str) -> bool:
        return any(re.search(pat, k) for k in keys)

    if has(r"(^|\.)stages\.\d+\.blocks\.\d+\.attn\.w_msa\."):
        return "mmcv-swin"
    if has(r"(^|\.)layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table"):
        return "timm-swin"
    if has(r"^(module\.)?backbone_module\."):
        return "path"
    if has(r"(^|\.)inter_norm\."):
        return "dpal"  # (or SAIP: same keys)
    if has(r"(^|\.)decoder_(embed|pred|blocks|norm)"):
        return "mae"
    if has(r"(^|\.)last_norm\."):
        return "vitpose"
    if has(r"(^|\.)layers\.\d+\.ln1\."):
        return "openmmlab-vit"
    if sum(k.startswith("base.") for k in keys) > len(keys) / 2:
        return "transreid"
    return "timm"


_MM_VIT = [  # OpenMMLab (mmcv/mmseg/mmdet/mmpretrain/Sapiens) VisionTransformer -> timm
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.attn\.in_proj_", r"blocks.\1.attn.qkv."),
    (r"^layers\.(\d+)\.attn\.attn\.out_proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.attn\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^layers\.(\d+)\.attn\.proj\.", r"blocks.\1.attn.proj."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^ln1\.", "norm."),
    (r"^pre_norm\.", "norm_pre."),
]

_UNFOLD_TO_SWIN = [0, 2, 1, 3]  # nn.Unfold's (row, col) order -> Swin's (0,0), (1,0), (0,1), (1,1)


def _merge_weight(w: torch.Tensor) -> torch.Tensor:
    """mmcv PatchMerging (channel c*4 + unfold position) -> Swin (position*C + c)."""
    if w.ndim == 2:
        out, cin = w.shape
        return w.reshape(out, cin // 4, 4)[:, :, _UNFOLD_TO_SWIN].transpose(1, 2).reshape(out, cin)
    return w.reshape(-1, 4)[:, _UNFOLD_TO_SWIN].t().reshape(-1)


def mmcv_swin_to_timm(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """SOLIDER/mmcv Swin keys -> :class:`~hcbench.backbones.swin.SoliderSwin`'s (timm's) keys."""
    norms = [int(m.group(1)) for k in sd if (m := re.match(r"^norm(\d+)\.", k))]
    last = max(norms) if norms else None
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for k, v in sd.items():
        if k.endswith("relative_position_index") or k.endswith("attn_mask"):
            dropped.append(k)  # derived buffers, rebuilt by the model
            continue
        if (m := re.match(r"^norm(\d+)\.(.*)$", k)):
            if int(m.group(1)) == last:
                out["norm." + m.group(2)] = v
            else:
                dropped.append(k)  # intermediate stages' output norms: the one-map contract never uses them
            continue
        nk = re.sub(r"^patch_embed\.projection\.", "patch_embed.proj.", k)
        if (m := re.match(r"^stages\.(\d+)\.downsample\.(norm|reduction)\.(.*)$", nk)):
            nk = f"layers.{int(m.group(1)) + 1}.downsample.{m.group(2)}.{m.group(3)}"
            v = _merge_weight(v)
        else:
            nk = re.sub(r"^stages\.(\d+)\.", r"layers.\1.", nk)
            nk = nk.replace(".attn.w_msa.", ".attn.").replace(".ffn.layers.0.0.", ".mlp.fc1.")
            nk = nk.replace(".ffn.layers.1.", ".mlp.fc2.")
        out[nk] = v
    return out, dropped


def remap_layout(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    """Convert OpenMMLab ViT / ViTPose key layouts to timm's, returning the layout's name (or None)."""
    if any(re.match(r"^layers\.\d+\.ln1\.", k) for k in sd):
        out = {}
        for k, v in sd.items():
            nk = k
            for pat, rep in _MM_VIT:
                nk = re.sub(pat, rep, nk)
            out[nk] = v
        return out, "openmmlab-vit"
    if any(k.startswith("last_norm.") for k in sd):  # mmpose ViTPose backbone
        return {("norm." + k[len("last_norm."):]) if k.startswith("last_norm.") else k: v for k, v in sd.items()}, "vitpose"
    return sd, None


def suggest_architecture(layout: str, sd: dict[str, torch.Tensor]) -> list[str]:
    """Release architectures whose checkpoints look like this one (layout + widths)."""
    from hcbench.backbones.releases import RELEASES

    width = None
    for k in ("patch_embed.proj.weight", "patch_embed.projection.weight"):
        if k in sd:
            width = int(sd[k].shape[0])
    families = {"dpal": ("dpal", "saip"), "path": ("path",), "mae": ("hap",), "vitpose": ("vitpose",),
                "mmcv-swin": ("solider",), "timm-swin": ("solider",), "transreid": ("transreid",)}.get(layout, ())
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"^blocks\.(\d+)\.", k))}
    depth = max(blocks) + 1 if blocks else None
    stages: dict[int, int] = {}
    for k in sd:
        if (m := re.match(r"^(?:layers|stages)\.(\d+)\.blocks\.(\d+)\.", k)):
            stages[int(m.group(1))] = max(stages.get(int(m.group(1)), 0), int(m.group(2)) + 1)
    depths = [stages[i] for i in sorted(stages)] or None
    out = []
    for name, rel in RELEASES.items():
        if not name.startswith(families):
            continue
        if width is not None and int(rel.params.get("width", -1)) != width:
            continue
        out.append(name)
    # releases whose depth matches the tensors, if any does; else every width match
    exact = [n for n in out if RELEASES[n].params.get("depth", depth) == depth
             and RELEASES[n].params.get("depths", depths) == depths]
    return exact or out


def check_architecture(arch: str, layout: str, card_layout: str, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse a plain architecture whose checkpoint's keys say it is a release that computes
    differently (DPAL's heads, ViTPose's padding, PATH's missing CLS, ...)."""
    from hcbench.backbones.releases import RELEASES

    if arch in RELEASES or card_layout != "auto" or layout in ("timm", "openmmlab-vit"):
        return
    names = suggest_architecture(layout, sd)
    if not names:
        return
    why = {"dpal": "pretraining-only inter_norm.* keys (DPAL/SAIP students)", "path": "module.backbone_module.* keys (PATH)",
           "mae": "an MAE decoder (HAP)", "vitpose": "last_norm.* keys (ViTPose)", "mmcv-swin": "an mmcv Swin (SOLIDER)",
           "timm-swin": "a Swin with a semantic controller (SOLIDER)", "transreid": "base.* keys (TransReID)"}[layout]
    raise CheckpointError(
        f"{path}: the card names {arch!r} but the checkpoint has {why}; that release computes differently "
        f"(heads, CLS token, padding or normalisation), so its features would be silently wrong. Use "
        f"architecture: {' or '.join(names)} (or set 'layout: {layout}' in the card to load it as {arch!r} anyway)")


def prepare_state_dict(raw: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], str, str | None]:
    """(state dict in the model's names, dropped keys, detected layout, conversion applied)."""
    layout = detect_layout(raw)
    sd, dropped = strip_prefixes(raw)
    remapped = None
    if layout == "mmcv-swin":
        sd, more = mmcv_swin_to_timm(sd)
        dropped += more
        remapped = "mmcv-swin"
    else:
        sd, remapped = remap_layout(sd)
    return sd, dropped, layout, remapped


