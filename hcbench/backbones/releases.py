"""Named architectures of the field's released human-centric backbones.

Each entry states the release's architecture, its input normalisation and its checkpoint key
layout; building one gives a randomly initialised :class:`ConfigurableViT` or
:class:`SoliderSwin` that a ``file:`` checkpoint in the release's layout loads into strictly.
A backbone card may override any parameter (e.g. a shallower depth for a test).

Facts per release (from each release's model definition and data pipeline):

- DPAL student (ViT-Ti/S): CLS token, learned table with a CLS slot, 6 heads in blocks 1-11 and
  12 in the last block; pretraining-only ``inter_norm.*`` dropped; ImageNet statistics.
- SAIP student (ViT-Ti): DeiT-Ti (3 heads), CLS, learned table; ``inter_norm.*`` dropped; ImageNet.
- PATH (HumanBench) ViT-B/L: no CLS token, learned table without a CLS slot, global attention,
  LayerNorm eps 1e-6, final norm, keys under ``module.backbone_module.``; ImageNet statistics
  (its ``_normalization`` uses 123.675/58.395 ...). Global embedding: mean of patch tokens.
- SOLIDER Swin-T/S/B: mmcv-style Swin with the semantic controller (default weight 0.2, as
  SOLIDER-REID's ReID configs); 0.5/0.5 statistics as SOLIDER-REID feeds it (a card may say
  ImageNet, which SOLIDER's own pretraining used).
- HAP ViT-B: MAE layout (CLS, fixed sin-cos table with a CLS slot); ``decoder_*``/``mask_token``
  dropped; ImageNet statistics.
- ViTPose-S/B: no CLS token; a table of 1 + h*w slots whose slot 0 is added to every patch;
  patch embedding 16x16/16 padded by 2; final ``last_norm``; ImageNet statistics. ViTPose-S has
  12 heads of width 32.
- TransReID ViT-B/16: CLS, learned table resized bilinearly, ``base.`` prefix; 0.5/0.5
  statistics. ``transreid_vit_base_s12`` is the overlapping-patch variant (stride 12); its
  camera embedding (SIE) needs per-image camera ids, which the backbone contract does not
  carry, so checkpoints holding ``sie_embed`` are refused with that reason.
- Sapiens-0.3B: mmpretrain ViT (``layers.N.ln1`` ...), 1024 wide, 24 layers, 16 heads, patch
  16 padded by 2, no CLS, final norm ``ln1``; ImageNet statistics; trained at 1024x768.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hcbench.normalization import HALF, IMAGENET_MEAN, IMAGENET_STD
from hcbench.registry import BACKBONES


@dataclass(frozen=True)
class Release:
    name: str
    kind: str  # "vit" | "swin"
    params: dict[str, Any]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "timm"
    container: str | None = None
    input_size: tuple[int, int] = (256, 192)  # what the release's downstream code feeds it
    description: str = ""
    markers: tuple[str, ...] = field(default=())  # key patterns that identify its checkpoints


def _vit(width: int, depth: int, heads, **kw) -> dict[str, Any]:
    return dict(width=width, depth=depth, heads=heads, **kw)


_NO_CLS = dict(cls_token=False, global_pool="mean")

RELEASES: dict[str, Release] = {r.name: r for r in [
    Release("dpal_vit_tiny", "vit", _vit(192, 12, [6] * 11 + [12]), layout="dpal", input_size=(256, 192),
            description="DPAL student ViT-Ti/16 (6 heads, 12 in the last block)", markers=("inter_norm.",)),
    Release("dpal_vit_small", "vit", _vit(384, 12, [6] * 11 + [12]), layout="dpal", input_size=(256, 192),
            description="DPAL student ViT-S/16 (6 heads, 12 in the last block)", markers=("inter_norm.",)),
    Release("saip_vit_tiny", "vit", _vit(192, 12, 3), layout="saip", input_size=(256, 192),
            description="SAIP student ViT-Ti/16", markers=("inter_norm.",)),
    Release("path_vit_base", "vit", _vit(768, 12, 12, **_NO_CLS), layout="path", input_size=(256, 192),
            description="PATH-B (HumanBench) ViT-B/16, no CLS token", markers=("module.backbone_module.",)),
    Release("path_vit_large", "vit", _vit(1024, 24, 16, **_NO_CLS), layout="path", input_size=(256, 192),
            description="PATH-L (HumanBench) ViT-L/16, no CLS token", markers=("module.backbone_module.",)),
    Release("hap_vit_base", "vit", _vit(768, 12, 12, pos_embed={"kind": "sincos"}), layout="mae",
            input_size=(256, 128), description="HAP ViT-B/16 (MAE layout, fixed sin-cos table)",
            markers=("decoder_embed.", "decoder_pred.")),
    Release("vitpose_vit_small", "vit",
            _vit(384, 12, 12, patch_padding=2, pos_embed={"add_slot0_to_patches": True}, **_NO_CLS),
            layout="vitpose", input_size=(256, 192), description="ViTPose-S backbone (pad 2, slot 0 on every patch)",
            markers=("last_norm.",)),
    Release("vitpose_vit_base", "vit",
            _vit(768, 12, 12, patch_padding=2, pos_embed={"add_slot0_to_patches": True}, **_NO_CLS),
            layout="vitpose", input_size=(256, 192), description="ViTPose-B backbone (pad 2, slot 0 on every patch)",
            markers=("last_norm.",)),
    Release("transreid_vit_base", "vit", _vit(768, 12, 12, pos_embed={"resize": "bilinear"}), mean=HALF, std=HALF,
            layout="transreid", input_size=(256, 128), description="TransReID ViT-B/16 (0.5 statistics)",
            markers=("base.",)),
    Release("transreid_vit_base_s12", "vit", _vit(768, 12, 12, patch_stride=12, pos_embed={"resize": "bilinear"}),
            mean=HALF, std=HALF, layout="transreid", input_size=(256, 128),
            description="TransReID ViT-B/16, overlapping patches (stride 12), no camera embedding"),
    Release("solider_swin_tiny", "swin", dict(width=96, depths=[2, 2, 6, 2], heads=[3, 6, 12, 24]), mean=HALF,
            std=HALF, layout="mmcv-swin", container="teacher", input_size=(384, 128),
            description="SOLIDER Swin-T with the semantic controller", markers=("semantic_embed_w.",)),
    Release("solider_swin_small", "swin", dict(width=96, depths=[2, 2, 18, 2], heads=[3, 6, 12, 24]), mean=HALF,
            std=HALF, layout="mmcv-swin", container="teacher", input_size=(384, 128),
            description="SOLIDER Swin-S with the semantic controller", markers=("semantic_embed_w.",)),
    Release("solider_swin_base", "swin", dict(width=128, depths=[2, 2, 18, 2], heads=[4, 8, 16, 32]), mean=HALF,
            std=HALF, layout="mmcv-swin", container="teacher", input_size=(384, 128),
            description="SOLIDER Swin-B with the semantic controller", markers=("semantic_embed_w.",)),
    Release("sapiens_0.3b", "vit", _vit(1024, 24, 16, patch_padding=2, **_NO_CLS), layout="openmmlab-vit",
            input_size=(1024, 768), description="Sapiens-0.3B (mmpretrain ViT, pad 2, no CLS)"),
]}


def build_release(name: str, img_size: tuple[int, int] = (256, 192), **overrides: Any):
    """A randomly initialised release architecture; ``overrides`` are backbone-card fields."""
    rel = RELEASES[name]
    params = {**rel.params}
    pe = dict(params.pop("pos_embed", {}) or {})
    pe.update(overrides.pop("pos_embed", None) or {})
    params.update(overrides)
    if rel.kind == "swin":
        from hcbench.backbones.swin import SoliderSwin, SwinConfig

        unknown = set(params) - set(SwinConfig.__dataclass_fields__)
        if unknown or pe:
            raise ValueError(f"{name}: a Swin has no {sorted(unknown | ({'pos_embed'} if pe else set()))}")
        model = SoliderSwin(SwinConfig(**params), img_size)
    else:
        from hcbench.backbones.vit import ConfigurableViT, ViTConfig

        unknown = set(params) - set(ViTConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{name}: a ViT has no {sorted(unknown)}")
        if isinstance(params.get("heads"), list) and "depth" in overrides and len(params["heads"]) != params["depth"]:
            # a shallower card keeps the release's pattern: the last block keeps the last count
            h = params["heads"]
            params["heads"] = [h[0]] * (params["depth"] - 1) + [h[-1]]
        model = ConfigurableViT(ViTConfig.from_dict({**params, "pos_embed": pe}), img_size)
    model.set_normalization(rel.mean, rel.std)
    model.release = rel
    return model


def _builder(name: str):
    def build(img_size: tuple[int, int] = (256, 192), **overrides: Any):
        return build_release(name, img_size, **overrides)

    build.__name__ = f"build_{name}"
    return build


for _name, _rel in RELEASES.items():
    BACKBONES.add(_name, _builder(_name), description=_rel.description, release=True,
                  input_size=_rel.input_size, layout=_rel.layout)
