"""Backbone contract, enrolled over every registered backbone, and checkpoint loading."""

import pickle
from pathlib import Path

import pytest
import torch

from hcbench.backbones import BackboneSpecError, build_backbone
from hcbench.backbones.checkpoint import CheckpointError, load_into
from hcbench.backbones.pyramid import SimpleFeaturePyramid
from hcbench.registry import BACKBONES

torch.set_num_threads(2)


_BUILT: dict = {}


def _small(name: str, img_size=(256, 192)):
    """A registered backbone (built once per test session); releases are built 2 blocks (per
    stage) deep to keep CPU time low: depth changes no shape the contract checks."""
    if name not in _BUILT:
        _BUILT.clear()  # one model alive at a time
        _BUILT[name] = _build_small(name, img_size)
    return _BUILT[name]


def _build_small(name: str, img_size):
    entry = BACKBONES.entry(name)
    if not entry.meta.get("release"):
        return build_backbone(name, img_size=img_size)
    from hcbench.backbones.releases import RELEASES

    shrink = {"depths": [2, 2, 2, 2]} if RELEASES[name].kind == "swin" else {"depth": 2}
    return entry.obj(img_size=img_size, **shrink)


@pytest.mark.parametrize("hw", [(256, 192), (256, 128)])
@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_registered_backbone_gives_features(name, hw):
    model = _small(name).eval()
    with torch.no_grad():
        f = model(torch.rand(2, 3, *hw))
    s = model.stride
    pe = getattr(model, "patch_embed", None)
    grid = pe.grid(hw) if hasattr(pe, "grid") else (hw[0] // s, hw[1] // s)
    assert f.embedding.shape == (2, model.embed_dim)
    assert f.dense.shape == (2, model.embed_dim, *grid)
    assert f.stride == s and torch.isfinite(f.dense).all() and torch.isfinite(f.embedding).all()
    ids = {model.layer_id(n) for n, _ in model.named_parameters()}
    assert min(ids) == 0 and max(ids) >= 1  # layer groups exist for layer-wise lr decay


def test_vit_tiny_numbers():
    m = build_backbone("vit_tiny")
    assert (m.embed_dim, m.stride, m.num_layers) == (192, 16, 12)
    assert sum(p.numel() for p in m.parameters()) == 5_523_648  # ViT-Ti without its ImageNet head


def test_timm_spec_and_unknown_names():
    m = build_backbone("timm:vit_small_patch16_224", (128, 64))
    assert m.embed_dim == 384
    with pytest.raises(KeyError, match="did you mean vit_tiny"):
        build_backbone("vit_tiyn")
    with pytest.raises(ValueError, match="unknown timm model"):
        build_backbone("timm:not_a_model_xyz")


def test_pyramid_shapes():
    fpn = SimpleFeaturePyramid(192, 16, out_channels=64)
    out = fpn(torch.randn(2, 192, 16, 12))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(64, 48), (32, 24), (16, 12), (8, 6)]
    assert fpn.strides == [4, 8, 16, 32]


def _trained_like_state(hw=(256, 128)):
    torch.manual_seed(0)
    src = build_backbone("vit_tiny", img_size=hw)
    for p in src.parameters():
        p.data.normal_(0, 0.02)
    return src, src.model.state_dict()


def test_prefixed_checkpoint_with_other_grid_loads_and_reports(tmp_path: Path):
    src, sd = _trained_like_state((256, 128))  # 16 x 8 position grid
    assert sd["pos_embed"].shape == (1, 1 + 16 * 8, 192)
    ckpt = {f"module.backbone.{k}": v for k, v in sd.items()}
    ckpt["module.keypoint_head.final_layer.weight"] = torch.zeros(17, 256, 1, 1)
    ckpt["module.keypoint_head.final_layer.bias"] = torch.zeros(17)
    path = tmp_path / "pose.pth"
    torch.save({"state_dict": ckpt, "meta": {"epoch": 210}}, path)

    model = build_backbone("vit_tiny", img_size=(256, 192))
    report = load_into(model, path)
    assert report.dropped == ["keypoint_head.final_layer.weight", "keypoint_head.final_layer.bias"]
    assert report.missing == [] and report.unexpected == []
    assert report.interpolated == {"pos_embed": ((1, 129, 192), (1, 193, 192))}
    assert report.loaded == len(sd)
    # weights other than the position embedding are copied exactly
    assert torch.equal(model.model.blocks[3].attn.qkv.weight, sd["blocks.3.attn.qkv.weight"])
    # the patch grid was resampled 16x8 -> 16x12 in 2-D (not as a flat sequence), bicubic without
    # antialias as the releases' own loaders do
    grid = sd["pos_embed"][:, 1:].reshape(1, 16, 8, 192).permute(0, 3, 1, 2)
    want = torch.nn.functional.interpolate(grid, size=(16, 12), mode="bicubic", align_corners=False)
    want = want.permute(0, 2, 3, 1).reshape(1, 16 * 12, 192)
    assert torch.allclose(model.model.pos_embed[:, 1:], want)
    assert torch.equal(model.model.pos_embed[:, :1], sd["pos_embed"][:, :1])
    assert model.checkpoint_sha256 == report.sha256 and len(report.sha256) == 64


def test_same_features_after_round_trip_through_safetensors(tmp_path: Path):
    from safetensors.torch import save_file

    src, sd = _trained_like_state((256, 192))
    save_file({f"student.{k}": v.contiguous() for k, v in sd.items()}, tmp_path / "s.safetensors",
              metadata={"hcbench.architecture": "vit_tiny"})
    model = build_backbone(f"file:{tmp_path / 's.safetensors'}", (256, 192)).eval()
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        assert torch.allclose(model(x).dense, src.eval()(x).dense, atol=1e-6)


def test_openmmlab_vit_layout_is_remapped(tmp_path: Path):
    src, sd = _trained_like_state((256, 192))
    mm = {}
    for k, v in sd.items():
        k2 = (k.replace("patch_embed.proj.", "patch_embed.projection.").replace("blocks.", "layers.")
              .replace(".norm1.", ".ln1.").replace(".norm2.", ".ln2.").replace(".attn.qkv.", ".attn.attn.in_proj_")
              .replace(".attn.proj.", ".attn.attn.out_proj.").replace(".mlp.fc1.", ".ffn.layers.0.0.")
              .replace(".mlp.fc2.", ".ffn.layers.1."))
        if k2.startswith("norm."):
            k2 = "ln1." + k2[len("norm."):]
        mm["backbone." + k2] = v
    mm["decode_head.conv_seg.weight"] = torch.zeros(20, 256, 1, 1)
    torch.save({"state_dict": mm}, tmp_path / "mmseg.pth")
    (tmp_path / "mmseg.pth.yaml").write_text("architecture: vit_tiny\n")
    model = build_backbone(f"file:{tmp_path / 'mmseg.pth'}", (256, 192)).eval()
    assert model.load_report.remapped == "openmmlab-vit"
    assert model.load_report.dropped == ["decode_head.conv_seg.weight"]
    x = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        assert torch.allclose(model(x).embedding, src.eval()(x).embedding, atol=1e-6)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": _Evil(marker)}, f)
    model = build_backbone("vit_tiny")
    with pytest.raises(CheckpointError, match="refused"):
        load_into(model, path)
    assert not marker.exists()


def test_missing_keys_fail_loudly_and_missing_card_is_explained(tmp_path: Path):
    _, sd = _trained_like_state((256, 192))
    del sd["blocks.11.mlp.fc2.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(BackboneSpecError, match="architecture"):
        build_backbone(f"file:{tmp_path / 'partial.pth'}")
    (tmp_path / "partial.pth.yaml").write_text("architecture: vit_tiny\n")
    with pytest.raises(CheckpointError, match="blocks.11.mlp.fc2.weight"):
        build_backbone(f"file:{tmp_path / 'partial.pth'}")
