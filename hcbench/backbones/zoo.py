"""Built-in backbone aliases. Registration is metadata only; timm is imported when built."""

from __future__ import annotations

from hcbench.registry import BACKBONES

_ALIASES = {
    "vit_tiny": ("vit_tiny_patch16_224", "ViT-Ti/16 (DeiT-Ti size), the DPAL/SAIP student"),
    "vit_small": ("vit_small_patch16_224", "ViT-S/16"),
    "vit_base": ("vit_base_patch16_224", "ViT-B/16 (PATH-B / ViTPose-B size)"),
    "resnet50": ("resnet50", "ResNet-50 (torchvision-style, timm weights layout)"),
}


def _alias_builder(timm_name: str):
    def build(img_size: tuple[int, int] = (256, 192), **kwargs):
        from hcbench.backbones.timm_backbone import TimmBackbone

        return TimmBackbone(timm_name, img_size=img_size, **kwargs)

    build.__name__ = f"build_{timm_name}"
    return build


for _alias, (_timm, _desc) in _ALIASES.items():
    BACKBONES.add(_alias, _alias_builder(_timm), timm=_timm, description=_desc)


# the field's released human-centric architectures (DPAL, SAIP, PATH, SOLIDER, HAP, ViTPose, ...)
import hcbench.backbones.releases  # noqa: E402,F401
