"""Exported students load as ``student:<name>`` with every key, and give the trained features."""

from __future__ import annotations

import pytest
import torch
import yaml
from pretrain_helpers import tiny_vit
from safetensors import safe_open

from hcbench.backbones import build_backbone
from hcbench.pretrain.baselines import FeatureKD
from hcbench.pretrain.export import architecture_of, export_student


@pytest.fixture
def students(tmp_path, monkeypatch):
    root = tmp_path / "students"
    monkeypatch.setenv("HCBENCH_STUDENTS", str(root))
    return root


def _trained_vit_tiny(batch):
    """A real ``vit_tiny`` (12 blocks) moved off its init by two feature-KD steps."""
    torch.manual_seed(0)
    student = build_backbone("vit_tiny", (64, 32))
    m = FeatureKD(student, tiny_vit("vit_small_patch16_224", depth=1))
    opt = torch.optim.AdamW(m.param_groups(0.05), lr=1e-2)
    for _ in range(2):
        loss = m(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return student.eval()


def test_exported_student_loads_with_no_missing_keys_and_same_features(students, batch):
    student = _trained_vit_tiny(batch)
    folder = export_student(student, "kd_tiny", architecture="vit_tiny", info={"method": "feature-kd",
                                                                               "final_losses": {"loss": 1.5}})
    assert folder == students / "kd_tiny"
    card = yaml.safe_load((folder / "card.yaml").read_text())
    assert card["architecture"] == "vit_tiny" and card["pos_grid"] == [4, 2] and card["method"] == "feature-kd"
    assert card["final_losses"] == {"loss": 1.5} and {"date", "hcbench", "weights_sha256"} <= set(card)
    with safe_open(str(folder / "backbone.safetensors"), framework="pt") as f:
        assert f.metadata() == {"hcbench.architecture": "vit_tiny"}
        assert set(f.keys()) == set(student.model.state_dict())

    loaded = build_backbone("student:kd_tiny", (64, 32)).eval()
    rep = loaded.load_report
    assert rep.missing == [] and rep.unexpected == [] and rep.dropped == []
    assert rep.loaded == len(student.model.state_dict())
    x = torch.rand(2, 3, 64, 32)
    with torch.no_grad():
        a, b = student(x), loaded(x)
    assert torch.equal(a.embedding, b.embedding) and torch.equal(a.dense, b.dense)
    assert loaded.checkpoint_sha256 == card["weights_sha256"]

    # at a protocol's input size the position embedding is resampled from the recorded grid
    big = build_backbone("student:kd_tiny", (256, 192))
    assert big.load_report.missing == [] and "pos_embed" in big.load_report.interpolated
    assert big.load_report.interpolated["pos_embed"] == ((1, 9, 192), (1, 1 + 16 * 12, 192))


def test_export_refuses_bad_names_and_architectures(students):
    vit = tiny_vit()
    with pytest.raises(ValueError, match="plain folder name"):
        export_student(vit, "../escape", architecture="pt_vit2_tiny")
    with pytest.raises(ValueError, match="alias or timm"):
        export_student(vit, "x", architecture="student:other")


def test_architecture_of_follows_file_and_student_cards(students):
    assert architecture_of("vit_tiny") == "vit_tiny"
    assert architecture_of("timm:vit_small_patch16_224") == "timm:vit_small_patch16_224"
    export_student(tiny_vit(), "base_run", architecture="pt_vit2_tiny")
    assert architecture_of("student:base_run") == "pt_vit2_tiny"  # continued pretraining keeps the arch
    assert architecture_of(f"file:{students / 'base_run' / 'backbone.safetensors'}") == "pt_vit2_tiny"
