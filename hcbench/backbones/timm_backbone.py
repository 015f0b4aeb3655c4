"""Any timm model behind the :class:`Backbone` contract.

ViT-like models (anything with ``patch_embed`` and prefix tokens) are created with
``dynamic_img_size=True`` so they run at any input size, their absolute position embedding
interpolated in 2-D by timm at forward time; the dense map is the final-norm patch-token
grid and the global embedding the CLS token (mean of patch tokens when the model has none).
CNNs give their last feature map and its global average. No weights are ever downloaded.
Inputs are normalised by :class:`Backbone` with ImageNet mean/std unless a card says otherwise.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from hcbench.backbones.features import Backbone, Features


class TimmBackbone(Backbone):
    def __init__(self, name: str, img_size: tuple[int, int] = (256, 192), **kwargs):
        super().__init__()
        import timm

        self.timm_name = name
        self.is_vit = _is_vit_name(name)
        create_kw = dict(pretrained=False, num_classes=0, **kwargs)
        if self.is_vit:
            create_kw.update(img_size=tuple(img_size), dynamic_img_size=True)
        self.model = timm.create_model(name, **create_kw)
        # randomly initialised: the field's ImageNet statistics (the Backbone default), never
        # timm's pretrained_cfg (0.5 for augreg ViTs), which describes weights we do not load
        if self.is_vit:
            self.embed_dim = int(self.model.embed_dim)
            patch = self.model.patch_embed.patch_size
            self.stride = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
            self.num_prefix = int(getattr(self.model, "num_prefix_tokens", 1))
            self.has_cls = bool(getattr(self.model, "cls_token", None) is not None)
            self.num_layers = len(self.model.blocks)
        else:
            info = self.model.feature_info[-1]
            self.embed_dim = int(info["num_chs"])
            self.stride = int(info["reduction"])
            self.num_prefix = 0
            self.has_cls = False
            self._groups = _group_ids(self.model)
            self.num_layers = max(self._groups.values(), default=0)

    def forward_features(self, x: torch.Tensor) -> Features:
        if not self.is_vit:
            fmap = self.model.forward_features(x)
            return Features(embedding=fmap.mean((2, 3)), dense=fmap, stride=self.stride)
        tokens = self.model.forward_features(x)  # B x (P + h*w) x C, final norm applied
        h, w = self.model.patch_embed.dynamic_feat_size(x.shape[-2:])
        prefix, patches = tokens[:, : self.num_prefix], tokens[:, self.num_prefix :]
        dense = patches.transpose(1, 2).reshape(x.shape[0], self.embed_dim, h, w)
        emb = prefix[:, 0] if self.has_cls else patches.mean(1)
        return Features(embedding=emb, dense=dense, stride=self.stride, prefix=prefix if self.num_prefix else None)

    def layer_id(self, name: str) -> int:
        name = name.removeprefix("model.")
        if self.is_vit:
            if name.startswith(("cls_token", "reg_token", "pos_embed", "patch_embed", "norm_pre", "mask_token")):
                return 0
            m = re.match(r"blocks\.(\d+)\.", name)
            return int(m.group(1)) + 1 if m else self.num_layers + 1
        return self._groups.get(name, self.num_layers)


def _is_vit_name(name: str) -> bool:
    import timm

    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:5]
        raise ValueError(f"unknown timm model {name!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    module = timm.models.model_entrypoint(name).__module__
    # families that accept img_size/dynamic_img_size and expose patch_embed + prefix tokens
    return module.rsplit(".", 1)[-1] in ("vision_transformer", "deit", "eva", "beit", "vision_transformer_hybrid")


def _group_ids(model: nn.Module) -> dict[str, int]:
    """Layer index of each parameter from timm's own group matcher (stem = 0)."""
    from timm.models import group_parameters

    if not hasattr(model, "group_matcher"):
        return {n: 0 for n, _ in model.named_parameters()}
    groups = group_parameters(model, model.group_matcher(coarse=False), reverse=False)
    out = {}
    for gid, names in groups.items():
        for n in names:
            out[n] = int(gid)
    return out
