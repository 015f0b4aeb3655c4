"""Released human-centric backbones load their own key layout and compute as published.

For each named architecture a checkpoint is written in the release's key layout and container
(random weights), and the expected features come from a reference forward written here from
the published architecture, with plain torch ops on the checkpoint's own tensors (release key
names, nn.Unfold patch merging, window attention window by window): it shares no code with
``hcbench.backbones``. ``build_backbone("file:...")`` must load with no missing or unexpected
key and give the same dense map and global embedding (1e-5 relative) at the input size the
release's downstream code uses. Large releases are built shallower through the card (``depth``
/ ``depths``), which changes no key name and no computation per block, to keep CPU time low.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hcbench.backbones import build_backbone

torch.set_num_threads(1)  # many small ops: one thread is faster on a shared CPU

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


# --------------------------------------------------------------------------- helpers
def _rand(g: torch.Generator, *shape, std=0.02):
    return torch.randn(*shape, generator=g) * std


def _ln(g, dim):
    return {"weight": 1 + _rand(g, dim, std=0.1), "bias": _rand(g, dim)}


def _lin(g, out, inp, bias=True):
    d = {"weight": _rand(g, out, inp)}
    if bias:
        d["bias"] = _rand(g, out)
    return d


def _put(sd, prefix, params):
    for k, v in params.items():
        sd[f"{prefix}.{k}"] = v


def _close(a: torch.Tensor, b: torch.Tensor, rel=1e-5):
    err = (a - b).norm() / b.norm()
    assert err < rel, f"relative difference {err:.2e}"


def _norm(x, stats):
    m = torch.tensor(stats[0]).view(1, 3, 1, 1)
    s = torch.tensor(stats[1]).view(1, 3, 1, 1)
    return (x - m) / s


def _layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _attention(x, wqkv, bqkv, wproj, bproj, heads, bias=None):
    b, n, c = x.shape
    d = c // heads
    qkv = (x @ wqkv.t() + bqkv).reshape(b, n, 3, heads, d)
    q, k, v = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
    a = (q * d**-0.5) @ k.transpose(-1, -2)
    if bias is not None:
        a = a + bias
    out = (a.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
    return out @ wproj.t() + bproj


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / 2**0.5))


# --------------------------------------------------------------------------- ViT family
def vit_weights(g, *, width, depth, grid, pos_slots, cls, patch=16, key=None):
    """A ViT's tensors under the release's names; ``key(part, i)`` gives each name."""
    mlp = 4 * width
    sd = {key("patch.weight"): _rand(g, width, 3, patch, patch, std=0.05), key("patch.bias"): _rand(g, width),
          key("pos"): _rand(g, 1, pos_slots + grid[0] * grid[1], width, std=0.5)}
    if cls:
        sd[key("cls")] = _rand(g, 1, 1, width, std=0.5)
    for i in range(depth):
        for part, (o, n) in {"qkv": (3 * width, width), "proj": (width, width), "fc1": (mlp, width),
                             "fc2": (width, mlp)}.items():
            # sharper-than-init attention (qkv std 0.1) so that head counts visibly matter
            for kk, v in (_lin(g, o, n) if part != "qkv" else {"weight": _rand(g, o, n, std=0.1),
                                                               "bias": _rand(g, o)}).items():
                sd[key(f"{part}.{kk}", i)] = v
        for part in ("norm1", "norm2"):
            for kk, v in _ln(g, width).items():
                sd[key(f"{part}.{kk}", i)] = v
    for kk, v in _ln(g, width).items():
        sd[key(f"norm.{kk}")] = v
    return sd


def timm_key(prefix="", final="norm", patch="patch_embed.proj"):
    def key(part, i=None):
        name, _, leaf = part.rpartition(".")
        if i is not None:
            sub = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "mlp.fc1", "fc2": "mlp.fc2"}.get(name, name)
            return f"{prefix}blocks.{i}.{sub}.{leaf}"
        return {"patch.weight": f"{prefix}{patch}.weight", "patch.bias": f"{prefix}{patch}.bias",
                "pos": f"{prefix}pos_embed", "cls": f"{prefix}cls_token",
                "norm.weight": f"{prefix}{final}.weight", "norm.bias": f"{prefix}{final}.bias"}[part]
    return key


def mmpretrain_key(prefix=""):
    def key(part, i=None):
        name, _, leaf = part.rpartition(".")
        if i is not None:
            sub = {"qkv": "attn.qkv", "proj": "attn.proj", "fc1": "ffn.layers.0.0", "fc2": "ffn.layers.1",
                   "norm1": "ln1", "norm2": "ln2"}[name]
            return f"{prefix}layers.{i}.{sub}.{leaf}"
        return {"patch.weight": f"{prefix}patch_embed.projection.weight",
                "patch.bias": f"{prefix}patch_embed.projection.bias", "pos": f"{prefix}pos_embed",
                "norm.weight": f"{prefix}ln1.weight", "norm.bias": f"{prefix}ln1.bias"}[part]
    return key


def ref_vit(sd, key, x, *, heads, cls, stride=16, pad=0, pos="cls", pos_grid=None, resize="bicubic",
            pool="cls", eps=1e-6):
    """The published ViT: conv patch embedding, position table, pre-norm blocks, final norm."""
    w = sd[key("patch.weight")]
    t = F.conv2d(x, w, sd[key("patch.bias")], stride=stride, padding=pad)
    b, c, h, wd = t.shape
    t = t.flatten(2).transpose(1, 2)
    table = sd[key("pos")]
    slots = 1 if pos in ("cls", "slot0") else 0
    patches = table[:, slots:]
    if pos_grid is not None and tuple(pos_grid) != (h, wd):  # the releases' loaders: F.interpolate
        grid = patches.reshape(1, pos_grid[0], pos_grid[1], c).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, wd), mode=resize, align_corners=False)
        patches = grid.permute(0, 2, 3, 1).reshape(1, h * wd, c)
    t = t + patches
    if pos == "slot0":
        t = t + table[:, :1]
    if cls:
        t = torch.cat([(sd[key("cls")] + table[:, :1]).expand(b, -1, -1), t], 1)
    for i, nh in enumerate(heads):
        y = _layer_norm(t, sd[key("norm1.weight", i)], sd[key("norm1.bias", i)], eps)
        t = t + _attention(y, sd[key("qkv.weight", i)], sd[key("qkv.bias", i)], sd[key("proj.weight", i)],
                           sd[key("proj.bias", i)], nh)
        y = _layer_norm(t, sd[key("norm2.weight", i)], sd[key("norm2.bias", i)], eps)
        y = _gelu(y @ sd[key("fc1.weight", i)].t() + sd[key("fc1.bias", i)])
        t = t + y @ sd[key("fc2.weight", i)].t() + sd[key("fc2.bias", i)]
    t = _layer_norm(t, sd[key("norm.weight")], sd[key("norm.bias")], eps)
    p = t[:, 1:] if cls else t
    dense = p.transpose(1, 2).reshape(b, c, h, wd)
    emb = t[:, 0] if pool == "cls" else p.mean(1)
    return dense, emb


def _check(path: Path, card: str, size, expected, **kw):
    (path.parent / (path.name + ".yaml")).write_text(card)
    model = build_backbone(f"file:{path}", size).eval()
    r = model.load_report
    assert r.missing == [] and r.unexpected == [], r.summary()
    with torch.no_grad():
        f = model(kw.get("x"))
    _close(f.dense, expected[0])
    _close(f.embedding, expected[1])
    return model


def _input(size, seed=1):
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the releases
@pytest.mark.parametrize("arch,width", [("dpal_vit_tiny", 192), ("dpal_vit_small", 384)])
def test_dpal_student_training_checkpoint(tmp_path, arch, width):
    """DPAL: CLS, 6 heads in blocks 1-11 and 12 in the last, inter_norm dropped, an argparse
    Namespace in the container, ImageNet statistics; 256x192 (its pose/parsing protocol)."""
    g = torch.Generator().manual_seed(0)
    key = timm_key()
    sd = vit_weights(g, width=width, depth=12, grid=(16, 12), pos_slots=1, cls=True, key=key)
    sd.update({"inter_norm.weight": torch.ones(width), "inter_norm.bias": torch.zeros(width)})
    path = tmp_path / "dpal.pth"
    torch.save({"model": sd, "args": argparse.Namespace(arch="vit_tiny", lr=1e-3), "epoch": 99}, path)
    x = _input((256, 192))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[6] * 11 + [12], cls=True)
    model = _check(path, f"architecture: {arch}\n", (256, 192), want, x=x)
    assert model.load_report.dropped == ["inter_norm.weight", "inter_norm.bias"]
    assert model.load_report.layout == "dpal"
    # the same weights computed with uniform heads differ: the head pattern matters
    wrong = ref_vit(sd, key, _norm(x, IMAGENET), heads=[6] * 12, cls=True)
    assert (wrong[0] - want[0]).norm() / want[0].norm() > 1e-3


def test_saip_student(tmp_path):
    """SAIP: DeiT-Ti (3 heads), CLS; student/teacher container with args; inter_norm dropped."""
    g = torch.Generator().manual_seed(1)
    key = timm_key()
    sd = vit_weights(g, width=192, depth=12, grid=(16, 12), pos_slots=1, cls=True, key=key)
    teacher = {k: v + 1 for k, v in sd.items()}
    sd["inter_norm.weight"] = torch.ones(192)
    path = tmp_path / "saip.pth"
    torch.save({"student": sd, "teacher": teacher, "args": argparse.Namespace(epochs=100)}, path)
    x = _input((256, 192))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[3] * 12, cls=True)
    _check(path, "architecture: saip_vit_tiny\n", (256, 192), want, x=x)


def test_path_base_multitask_checkpoint(tmp_path):
    """PATH-B: module.backbone_module. prefix among necks/decoders, no CLS token, a table without
    CLS slot trained at 224x224 (14x14) and resized bicubic to 16x12, mean-pooled embedding."""
    g = torch.Generator().manual_seed(2)
    key = timm_key("module.backbone_module.")
    sd = vit_weights(g, width=768, depth=2, grid=(14, 14), pos_slots=0, cls=False, key=key)
    sd["module.neck_module.conv.weight"] = torch.zeros(4, 4)
    sd["module.decoder_module.fc.weight"] = torch.zeros(4, 4)
    path = tmp_path / "path_b.pth"
    torch.save({"state_dict": sd, "step": 1000}, path)
    x = _input((256, 192))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[12] * 2, cls=False, pos="none", pos_grid=(14, 14),
                   pool="mean")
    model = _check(path, "architecture: path_vit_base\ndepth: 2  # shallower for CPU time\n", (256, 192), want, x=x)
    r = model.load_report
    assert r.layout == "path" and sorted(r.dropped) == ["neck_module.conv.weight", "decoder_module.fc.weight"][::-1]
    assert r.interpolated["pos_embed"] == ((1, 196, 768), (1, 192, 768))


def test_path_large(tmp_path):
    g = torch.Generator().manual_seed(3)
    key = timm_key("module.backbone_module.")
    sd = vit_weights(g, width=1024, depth=1, grid=(16, 12), pos_slots=0, cls=False, key=key)
    path = tmp_path / "path_l.pth"
    torch.save({"state_dict": sd}, path)
    x = _input((256, 192))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[16], cls=False, pos="none", pool="mean")
    _check(path, "architecture: path_vit_large\ndepth: 1  # 24 in the release; one block keeps CPU time low\n",
           (256, 192), want, x=x)


def test_hap_mae_checkpoint(tmp_path):
    """HAP: MAE layout (CLS, sin-cos table with a CLS slot, decoder_*/mask_token dropped), 256x128."""
    g = torch.Generator().manual_seed(4)
    key = timm_key()
    sd = vit_weights(g, width=768, depth=2, grid=(16, 8), pos_slots=1, cls=True, key=key)
    sd.update({"mask_token": torch.zeros(1, 1, 512), "decoder_embed.weight": torch.zeros(512, 768),
               "decoder_pos_embed": torch.zeros(1, 129, 512), "decoder_blocks.0.norm1.weight": torch.ones(512),
               "decoder_norm.weight": torch.ones(512), "decoder_pred.weight": torch.zeros(768, 512)})
    path = tmp_path / "hap.pth"
    torch.save({"model": sd, "args": argparse.Namespace(model="mae_vit_base_patch16")}, path)
    x = _input((256, 128))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[12] * 2, cls=True)
    model = _check(path, "architecture: hap_vit_base\ndepth: 2\n", (256, 128), want, x=x)
    assert model.load_report.layout == "mae" and "mask_token" in model.load_report.dropped


@pytest.mark.parametrize("arch,width,depth", [("vitpose_vit_small", 384, 12), ("vitpose_vit_base", 768, 2)])
def test_vitpose_backbone(tmp_path, arch, width, depth):
    """ViTPose: no CLS, patch embedding padded by 2, slot 0 of the table added to every patch,
    last_norm; mmpose container with the keypoint head; 256x192."""
    g = torch.Generator().manual_seed(5)
    key = timm_key("backbone.", final="last_norm")
    sd = vit_weights(g, width=width, depth=depth, grid=(16, 12), pos_slots=1, cls=False, key=key)
    sd["keypoint_head.final_layer.weight"] = torch.zeros(17, 256, 1, 1)
    path = tmp_path / "vitpose.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": sd}, path)
    x = _input((256, 192))
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[12] * depth, cls=False, pad=2, pos="slot0", pool="mean")
    card = f"architecture: {arch}\n" + (f"depth: {depth}\n" if depth != 12 else "")
    model = _check(path, card, (256, 192), want, x=x)
    assert model.load_report.layout == "vitpose"


def test_transreid_finetuned_checkpoint(tmp_path):
    """TransReID ViT-B: base. prefix (BNNeck and classifier dropped), 0.5 statistics, an
    ImageNet 14x14 table resized bilinearly to 16x8, CLS embedding; 256x128."""
    g = torch.Generator().manual_seed(6)
    key = timm_key("base.")
    sd = vit_weights(g, width=768, depth=2, grid=(14, 14), pos_slots=1, cls=True, key=key)
    sd.update({"bottleneck.weight": torch.ones(768), "classifier.weight": torch.zeros(751, 768)})
    path = tmp_path / "transreid.pth"
    torch.save(sd, path)
    x = _input((256, 128))
    want = ref_vit(sd, key, _norm(x, HALF), heads=[12] * 2, cls=True, pos_grid=(14, 14), resize="bilinear")
    model = _check(path, "architecture: transreid_vit_base\ndepth: 2\n", (256, 128), want, x=x)
    assert model.load_report.layout == "transreid" and model.mean == (0.5, 0.5, 0.5)


def test_transreid_overlapping_patches_and_camera_embedding(tmp_path):
    g = torch.Generator().manual_seed(7)
    key = timm_key("base.")
    sd = vit_weights(g, width=768, depth=1, grid=(21, 10), pos_slots=1, cls=True, key=key)
    path = tmp_path / "transreid_s12.pth"
    torch.save(sd, path)
    x = _input((256, 128))
    want = ref_vit(sd, key, _norm(x, HALF), heads=[12], cls=True, stride=12)
    _check(path, "architecture: transreid_vit_base_s12\ndepth: 1\n", (256, 128), want, x=x)
    sd["base.sie_embed"] = torch.zeros(6, 1, 768)
    torch.save(sd, path)
    from hcbench.backbones.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="camera embedding.*not supported"):
        build_backbone(f"file:{path}", (256, 128))


def _sapiens(tmp_path, size):
    g = torch.Generator().manual_seed(8)
    key = mmpretrain_key("backbone.")
    sd = vit_weights(g, width=1024, depth=1, grid=(64, 48), pos_slots=0, cls=False, key=key)
    path = tmp_path / "sapiens_0.3b.pth"
    torch.save({"state_dict": sd, "meta": {"mmengine_version": "0.10"}}, path)
    x = _input(size)
    want = ref_vit(sd, key, _norm(x, IMAGENET), heads=[16], cls=False, pad=2, pos="none", pos_grid=(64, 48),
                   pool="mean")
    model = _check(path, "architecture: sapiens_0.3b\ndepth: 1  # 24 in the release; one block keeps CPU time low\n",
                   size, want, x=x)
    assert model.load_report.remapped == "openmmlab-vit"
    return model


@pytest.mark.slow
def test_sapiens_mmpretrain_checkpoint_at_its_size(tmp_path):
    """Sapiens-0.3B: mmpretrain names (layers.N.ln1, ffn.layers.0.0, final ln1), patch padding 2,
    no CLS, at 1024x768 (its 64x48 grid, no resampling). ~20 s on 2 shared cores: marked slow."""
    assert _sapiens(tmp_path, (1024, 768)).load_report.interpolated == {}


def test_sapiens_mmpretrain_checkpoint_resampled(tmp_path):
    """The same layout and computation at a pose crop, 256x192: the 64x48 table (1024x768 with
    padding 2) resampled bicubic, no antialias, to 16x12."""
    model = _sapiens(tmp_path, (256, 192))
    assert model.load_report.interpolated == {"pos_embed": ((1, 3072, 1024), (1, 192, 1024))}


# --------------------------------------------------------------------------- SOLIDER Swin
def _mmcv_rel_index(ws):
    seq1 = torch.arange(0, (2 * ws - 1) * ws, 2 * ws - 1)
    seq2 = torch.arange(0, ws)
    coords = (seq1[:, None] + seq2[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1).contiguous()


def solider_weights(g, width, depths, heads, ws=7):
    sd = {"patch_embed.projection.weight": _rand(g, width, 3, 4, 4, std=0.1),
          "patch_embed.projection.bias": _rand(g, width)}
    _put(sd, "patch_embed.norm", _ln(g, width))
    dims = [width * 2**i for i in range(len(depths))]
    for i, (d, nh) in enumerate(zip(depths, heads, strict=True)):
        c = dims[i]
        for j in range(d):
            p = f"stages.{i}.blocks.{j}"
            _put(sd, f"{p}.norm1", _ln(g, c))
            _put(sd, f"{p}.norm2", _ln(g, c))
            sd[f"{p}.attn.w_msa.relative_position_bias_table"] = _rand(g, (2 * ws - 1) ** 2, nh, std=0.5)
            sd[f"{p}.attn.w_msa.relative_position_index"] = _mmcv_rel_index(ws)
            _put(sd, f"{p}.attn.w_msa.qkv", _lin(g, 3 * c, c))
            _put(sd, f"{p}.attn.w_msa.proj", _lin(g, c, c))
            _put(sd, f"{p}.ffn.layers.0.0", _lin(g, 4 * c, c))
            _put(sd, f"{p}.ffn.layers.1", _lin(g, c, 4 * c))
        if i < len(depths) - 1:
            _put(sd, f"stages.{i}.downsample.norm", _ln(g, 4 * c))
            sd[f"stages.{i}.downsample.reduction.weight"] = _rand(g, 2 * c, 4 * c)
        _put(sd, f"norm{i}", _ln(g, c))
        out = dims[min(i + 1, len(depths) - 1)]
        _put(sd, f"semantic_embed_w.{i}", _lin(g, out, 2, ))
        _put(sd, f"semantic_embed_b.{i}", _lin(g, out, 2))
    return sd


def ref_solider(sd, x, depths, heads, semantic_weight, ws=7, eps=1e-5):
    """SOLIDER's Swin as published (mmcv): corner padding, window attention window by window with
    the stored relative index, the -100 shift mask, nn.Unfold patch merging, semantic modulation
    after each downsample, the last stage's output norm, spatial mean."""
    b = x.shape[0]
    x = F.pad(x, (0, -x.shape[-1] % 4, 0, -x.shape[-2] % 4))
    t = F.conv2d(x, sd["patch_embed.projection.weight"], sd["patch_embed.projection.bias"], stride=4)
    h, w = t.shape[-2:]
    t = _layer_norm(t.flatten(2).transpose(1, 2), sd["patch_embed.norm.weight"], sd["patch_embed.norm.bias"], eps)
    sem = torch.tensor([[semantic_weight, 1 - semantic_weight]]).expand(b, 2)
    for i, d in enumerate(depths):
        for j in range(d):
            p = f"stages.{i}.blocks.{j}."
            c = t.shape[-1]
            y = _layer_norm(t, sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps).view(b, h, w, c)
            hp, wp = h + (-h % ws), w + (-w % ws)
            y = F.pad(y, (0, 0, 0, wp - w, 0, hp - h))
            shift = ws // 2 if j % 2 else 0
            label = torch.zeros(hp, wp)
            if shift:
                y = torch.roll(y, (-shift, -shift), (1, 2))
                rows = [0] * (hp - ws) + [1] * (ws - shift) + [2] * shift
                cols = [0] * (wp - ws) + [1] * (ws - shift) + [2] * shift
                label = torch.tensor(rows)[:, None] * 3 + torch.tensor(cols)[None, :]
            table = sd[p + "attn.w_msa.relative_position_bias_table"]
            rel = table[sd[p + "attn.w_msa.relative_position_index"].view(-1)].view(ws * ws, ws * ws, -1)
            rel = rel.permute(2, 0, 1)
            out = torch.zeros_like(y)
            for r in range(0, hp, ws):
                for s in range(0, wp, ws):
                    win = y[:, r:r + ws, s:s + ws].reshape(b, ws * ws, c)
                    lab = label[r:r + ws, s:s + ws].reshape(-1)
                    mask = torch.where(lab[:, None] == lab[None, :], 0.0, -100.0)
                    o = _attention(win, sd[p + "attn.w_msa.qkv.weight"], sd[p + "attn.w_msa.qkv.bias"],
                                   sd[p + "attn.w_msa.proj.weight"], sd[p + "attn.w_msa.proj.bias"], heads[i],
                                   bias=rel + mask)
                    out[:, r:r + ws, s:s + ws] = o.view(b, ws, ws, c)
            if shift:
                out = torch.roll(out, (shift, shift), (1, 2))
            t = t + out[:, :h, :w].reshape(b, h * w, c)
            y = _layer_norm(t, sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)
            y = _gelu(y @ sd[p + "ffn.layers.0.0.weight"].t() + sd[p + "ffn.layers.0.0.bias"])
            t = t + y @ sd[p + "ffn.layers.1.weight"].t() + sd[p + "ffn.layers.1.bias"]
        if i == len(depths) - 1:
            break
        c = t.shape[-1]
        m = F.pad(t.view(b, h, w, c).permute(0, 3, 1, 2), (0, w % 2, 0, h % 2))
        h, w = m.shape[-2] // 2, m.shape[-1] // 2
        m = F.unfold(m, kernel_size=2, stride=2).transpose(1, 2)  # channel c*4 + (row*2 + col)
        m = _layer_norm(m, sd[f"stages.{i}.downsample.norm.weight"], sd[f"stages.{i}.downsample.norm.bias"], eps)
        t = m @ sd[f"stages.{i}.downsample.reduction.weight"].t()
        ww = sem @ sd[f"semantic_embed_w.{i}.weight"].t() + sd[f"semantic_embed_w.{i}.bias"]
        bb = sem @ sd[f"semantic_embed_b.{i}.weight"].t() + sd[f"semantic_embed_b.{i}.bias"]
        t = t * F.softplus(ww).unsqueeze(1) + bb.unsqueeze(1)
    last = len(depths) - 1
    t = _layer_norm(t, sd[f"norm{last}.weight"], sd[f"norm{last}.bias"], eps)
    return t.transpose(1, 2).reshape(b, -1, h, w), t.mean(1)


@pytest.mark.parametrize("arch,width,depths,heads", [
    ("solider_swin_tiny", 96, [2, 2, 6, 2], [3, 6, 12, 24]),
    ("solider_swin_small", 96, [2, 2, 2, 2], [3, 6, 12, 24]),
    ("solider_swin_base", 128, [2, 2, 2, 2], [4, 8, 16, 32]),
])
def test_solider_swin_teacher_checkpoint(tmp_path, arch, width, depths, heads):
    """SOLIDER: DINO-style container (teacher used; student under module.), mmcv Swin keys,
    semantic weight from the card, 384x128 (SOLIDER-REID's size: grids 96x32 .. 12x4 need window
    padding), 0.5 statistics."""
    g = torch.Generator().manual_seed(9)
    sd = solider_weights(g, width, depths, heads)
    teacher = {f"backbone.{k}": v for k, v in sd.items()}
    teacher["head.mlp.0.weight"] = torch.zeros(8, 8)
    student = {f"module.{k}": v * 0 for k, v in teacher.items()}
    path = tmp_path / "solider.pth"
    torch.save({"student": student, "teacher": teacher, "epoch": 1, "args": argparse.Namespace(arch="swin")}, path)
    x = _input((384, 128))
    want = ref_solider(sd, _norm(x, HALF), depths, heads, semantic_weight=0.6)
    card = f"architecture: {arch}\nsemantic_weight: 0.6\n"
    if depths != [2, 2, 18, 2] and arch != "solider_swin_tiny":
        card += f"depths: {depths}  # 18 blocks in stage 3 in the release; fewer for CPU time\n"
    model = _check(path, card, (384, 128), want, x=x)
    r = model.load_report
    assert r.layout == "mmcv-swin" and r.remapped == "mmcv-swin"
    assert {"norm0.weight", "norm1.weight", "norm2.weight", "head.mlp.0.weight"} <= set(r.dropped)


def test_patch_merging_reorder_is_its_own_inverse_pattern():
    """mmcv's Unfold order (c*4 + row*2 + col) against Swin's concatenation of the (0,0), (1,0),
    (0,1), (1,1) neighbours, checked on a map whose values name their position."""
    from hcbench.backbones.checkpoint import _merge_weight

    c = 3
    x = torch.arange(2 * 2 * c, dtype=torch.float32).view(1, c, 2, 2)  # value = ch*4 + row*2 + col
    unfold = F.unfold(x, 2, stride=2)[0, :, 0]  # mmcv's merged vector
    swin = torch.cat([x[0, :, 0, 0], x[0, :, 1, 0], x[0, :, 0, 1], x[0, :, 1, 1]])  # original Swin's
    w = torch.randn(5, 4 * c)
    assert torch.allclose(_merge_weight(w) @ swin, w @ unfold)  # same linear map after reordering
