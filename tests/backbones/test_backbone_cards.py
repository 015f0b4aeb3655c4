"""Backbone cards, bad checkpoint files, architecture mismatches, normalisation and `inspect`."""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path

import pytest
import torch

from hcbench.backbones import BackboneSpecError, build_backbone
from hcbench.backbones.card import BackboneCardError
from hcbench.backbones.checkpoint import CheckpointError, PartialLoadWarning
from hcbench.cli import main
from hcbench.errors import UserError

torch.set_num_threads(1)


def _vit_tiny_state(seed=0, inter_norm=False):
    torch.manual_seed(seed)
    m = build_backbone("vit_tiny", (256, 192))
    for p in m.parameters():
        p.data.normal_(0, 0.02)
    sd = {k: v.clone() for k, v in m.model.state_dict().items()}
    if inter_norm:
        sd["inter_norm.weight"] = torch.ones(192)
        sd["inter_norm.bias"] = torch.zeros(192)
    return m, sd


# --------------------------------------------------------------------------- normalisation
def test_backbone_normalises_its_own_input_with_its_statistics():
    m = build_backbone("vit_tiny").eval()
    assert m.mean == (0.485, 0.456, 0.406) and m.std == (0.229, 0.224, 0.225)  # not timm's augreg 0.5
    x = torch.rand(1, 3, 256, 192)
    want_in = (x - torch.tensor(m.mean).view(1, 3, 1, 1)) / torch.tensor(m.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(m(x).dense, m.forward_features(want_in).dense, atol=1e-6)
    assert "pixel_mean" not in m.state_dict()  # statistics are not weights
    assert build_backbone("transreid_vit_base_s12", (256, 128)).mean == (0.5, 0.5, 0.5)
    assert build_backbone("dpal_vit_tiny").std == (0.229, 0.224, 0.225)


def test_card_sets_statistics_and_architecture(tmp_path: Path):
    _, sd = _vit_tiny_state()
    torch.save(sd, tmp_path / "w.pth")
    (tmp_path / "w.pth.yaml").write_text("architecture: vit_tiny\nmean: [0.5, 0.5, 0.5]\nstd: [0.5, 0.5, 0.5]\n")
    m = build_backbone(f"file:{tmp_path / 'w.pth'}")
    assert m.mean == (0.5, 0.5, 0.5) and m.load_report.complete
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sd.items()}, tmp_path / "m.safetensors",
              metadata={"hcbench.architecture": "dpal_vit_tiny", "hcbench.heads": "[3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3]",
                        "hcbench.std": "[0.25, 0.25, 0.25]"})
    m = build_backbone(f"file:{tmp_path / 'm.safetensors'}")
    assert [b.attn.heads for b in m.blocks] == [3] * 12 and m.std == (0.25, 0.25, 0.25)


@pytest.mark.parametrize("text,match", [
    ("architecture: vit_tiny\nheds: 6\n", "heds.*Extra inputs are not permitted"),
    ("architecture: vit_tiny\npos_embed: {kind: learnt}\n", "pos_embed.kind"),
    ("architecture: vit_tiny\nstd: [0.5, 0, 0.5]\n", "std"),
    ("depth: 12\n", "needs an 'architecture' field"),
    ("architecture: vit_tiny\n  depth: [\n", "YAML syntax error at line"),
    ("architecture: !!python/object/apply:os.system ['echo pwned']\n", "unsafe or unknown tag"),
    ("architecture: vit_tiny\nheads: 6\n", "not a configurable release architecture"),
    ("architecture: dpal_vit_tiny\nheads: [6, 12]\n", "heads lists 2 blocks but depth is 12"),
])
def test_bad_sidecar_cards_name_the_file(tmp_path: Path, text, match):
    _, sd = _vit_tiny_state()
    torch.save(sd, tmp_path / "w.pth")
    (tmp_path / "w.pth.yaml").write_text(text)
    with pytest.raises(UserError, match=match) as e:
        build_backbone(f"file:{tmp_path / 'w.pth'}")
    assert "w.pth" in str(e.value)


def _broken(tmp_path: Path, kind: str) -> Path:
    _, sd = _vit_tiny_state()
    if kind == "empty safetensors":
        p = tmp_path / "e.safetensors"
        p.write_bytes(b"")
    elif kind == "truncated safetensors":
        from safetensors.torch import save_file

        p = tmp_path / "t.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, p, metadata={"hcbench.architecture": "vit_tiny"})
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif kind == "pickle renamed .safetensors":
        p = tmp_path / "p.safetensors"
        torch.save(sd, p)
        (tmp_path / "p.safetensors.yaml").write_text("architecture: vit_tiny\n")
    elif kind == "missing path":
        p = tmp_path / "nope.pth"
    elif kind == "folder":
        p = tmp_path / "run"
        p.mkdir()
        (p / "model.safetensors").write_bytes(b"x")
    elif kind == "text file named .pth":
        p = tmp_path / "notes.pth"
        p.write_text("these are not weights\n")
        (tmp_path / "notes.pth.yaml").write_text("architecture: vit_tiny\n")
    if kind in ("empty safetensors", "truncated safetensors", "missing path", "folder"):
        (tmp_path / f"{p.name}.yaml").write_text("architecture: vit_tiny\n") if kind != "folder" else None
    return p


@pytest.mark.parametrize("kind,match", [
    ("empty safetensors", "empty"),
    ("truncated safetensors", "not a valid safetensors file"),
    ("pickle renamed .safetensors", "a pickle .* renamed .safetensors"),
    ("missing path", "no such checkpoint file"),
    ("folder", "is a folder, not a checkpoint file.*model.safetensors"),
    ("text file named .pth", "not a PyTorch checkpoint .*text file"),
])
def test_broken_checkpoints_are_clear_user_errors(tmp_path: Path, kind, match):
    p = _broken(tmp_path, kind)
    with pytest.raises(UserError, match=match) as e:
        build_backbone(f"file:{p}")
    assert str(p) in str(e.value)


def test_broken_checkpoint_on_the_command_line_has_no_traceback(tmp_path: Path, capsys):
    p = _broken(tmp_path, "text file named .pth")
    assert main(["inspect", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hcbench: error: ") and str(p) in err and "Traceback" not in err


class _OtherArgs(argparse.Namespace):
    pass


def test_only_argparse_namespace_is_allowed_in_the_pickle(tmp_path: Path):
    _, sd = _vit_tiny_state()
    (tmp_path / "ok.pth.yaml").write_text("architecture: vit_tiny\n")
    torch.save({"model": sd, "args": argparse.Namespace(lr=0.1)}, tmp_path / "ok.pth")
    assert build_backbone(f"file:{tmp_path / 'ok.pth'}").load_report.complete

    torch.save({"model": sd, "args": _OtherArgs(lr=0.1)}, tmp_path / "no.pth")  # any other class is refused
    (tmp_path / "no.pth.yaml").write_text("architecture: vit_tiny\n")
    with pytest.raises(CheckpointError, match="refused"):
        build_backbone(f"file:{tmp_path / 'no.pth'}")


# --------------------------------------------------------------------------- mismatches and reports
def test_plain_vit_tiny_card_on_a_dpal_checkpoint_names_the_release(tmp_path: Path):
    _, sd = _vit_tiny_state(inter_norm=True)
    torch.save({"model": sd, "args": argparse.Namespace()}, tmp_path / "dpal.pth")
    (tmp_path / "dpal.pth.yaml").write_text("architecture: vit_tiny\n")
    with pytest.raises(CheckpointError, match="inter_norm.*dpal_vit_tiny or saip_vit_tiny"):
        build_backbone(f"file:{tmp_path / 'dpal.pth'}")
    # saying the layout explicitly means "I know": it loads as a plain vit_tiny, inter_norm dropped
    (tmp_path / "dpal.pth.yaml").write_text("architecture: vit_tiny\nlayout: dpal\n")
    m = build_backbone(f"file:{tmp_path / 'dpal.pth'}")
    assert m.load_report.dropped == ["inter_norm.weight", "inter_norm.bias"]


def test_vitpose_keys_under_a_plain_vit_base_card_are_refused(tmp_path: Path):
    sd = {"backbone.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16), "backbone.last_norm.weight": torch.ones(768)}
    torch.save({"state_dict": sd}, tmp_path / "vp.pth")
    (tmp_path / "vp.pth.yaml").write_text("architecture: vit_base\n")
    with pytest.raises(CheckpointError, match="vitpose_vit_base"):
        build_backbone(f"file:{tmp_path / 'vp.pth'}")


def test_strict_false_is_reported_and_warned(tmp_path: Path):
    _, sd = _vit_tiny_state()
    for k in [k for k in sd if k.startswith("blocks.11.")]:
        del sd[k]
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "half.pth")
    (tmp_path / "half.pth.yaml").write_text("architecture: vit_tiny\nstrict: false\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = build_backbone(f"file:{tmp_path / 'half.pth'}")
    assert any(issubclass(w.category, PartialLoadWarning) and "missing" in str(w.message) for w in caught)
    r = m.load_report.to_dict()
    assert r["counts"]["missing"] == 12 and r["counts"]["unexpected"] == 1 and r["unexpected"] == ["extra.weight"]
    assert r["counts"]["loaded"] == len(sd) - 1 and r["strict"] is False
    # and strict (the default) refuses it, naming the tensors
    (tmp_path / "half.pth.yaml").write_text("architecture: vit_tiny\n")
    with pytest.raises(CheckpointError, match="blocks.11"):
        build_backbone(f"file:{tmp_path / 'half.pth'}")


def test_pos_embed_resize_is_bicubic_without_antialias_unless_the_card_says(tmp_path: Path):
    """Shrinking a 32x24 table to 16x12: the releases' F.interpolate(bicubic) without antialias."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    _, sd = _vit_tiny_state()
    sd["pos_embed"] = torch.randn(1, 1 + 32 * 24, 192, generator=g)
    torch.save(sd, tmp_path / "big.pth")
    grid = sd["pos_embed"][:, 1:].reshape(1, 32, 24, 192).permute(0, 3, 1, 2)
    for card, aa in (("", False), ("pos_embed: {antialias: true}\n", True)):
        (tmp_path / "big.pth.yaml").write_text("architecture: dpal_vit_tiny\n" + card)
        m = build_backbone(f"file:{tmp_path / 'big.pth'}", (256, 192))
        want = F.interpolate(grid, size=(16, 12), mode="bicubic", align_corners=False, antialias=aa)
        assert torch.allclose(m.pos_embed[:, 1:], want.permute(0, 2, 3, 1).reshape(1, 192, 192), atol=1e-6)
        assert m.load_report.interpolated == {"pos_embed": ((1, 769, 192), (1, 193, 192))}


# --------------------------------------------------------------------------- inspect
def test_inspect_prints_layout_suggested_card_and_report(tmp_path: Path, capsys):
    _, sd = _vit_tiny_state(inter_norm=True)
    path = tmp_path / "student.pth"
    torch.save({"model": sd, "args": argparse.Namespace(epochs=1)}, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "layout:     dpal" in out and "architecture: dpal_vit_tiny" in out and "saip_vit_tiny" in out
    assert "150 loaded, 2 dropped, 0 missing, 0 unexpected, 0 resampled" in out
    assert main(["inspect", str(path), "--format", "json", "--architecture", "vit_small"]) == 0
    import json

    r = json.loads(capsys.readouterr().out)
    assert r["layout"] == "dpal" and r["architecture"] == "vit_small"
    assert r["report"]["counts"]["mismatched"] > 0 and "blocks.0.attn.qkv.weight: [576, 192] vs model [1152, 384]" in r["report"]["mismatched"]
    assert not (tmp_path / "student.pth.yaml").exists()  # nothing written


def test_pickle_with_code_is_still_refused(tmp_path: Path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    (tmp_path / "evil.pth.yaml").write_text("architecture: vit_tiny\n")
    with pytest.raises(CheckpointError, match="refused"):
        build_backbone(f"file:{path}")


def test_missing_card_points_to_inspect(tmp_path: Path):
    _, sd = _vit_tiny_state()
    torch.save(sd, tmp_path / "x.pth")
    with pytest.raises(BackboneSpecError, match="hcbench inspect"):
        build_backbone(f"file:{tmp_path / 'x.pth'}")
    with pytest.raises(BackboneCardError):
        (tmp_path / "x.pth.yaml").write_text("- just\n- a list\n")
        build_backbone(f"file:{tmp_path / 'x.pth'}")
