"""Baselines: Proteus-style feature distillation and the untrained random student."""

from __future__ import annotations

import copy

import pytest
import torch
from pretrain_helpers import tiny_vit

from hcbench.pretrain import get_method
from hcbench.pretrain.baselines import FeatureKD, RandomInit
from hcbench.pretrain.tokens import encode


def test_feature_kd_is_zero_when_the_student_is_the_teacher_through_identity_projectors(batch):
    teacher = tiny_vit()
    m = FeatureKD(copy.deepcopy(teacher), teacher)
    with torch.no_grad():
        for proj in (m.cls_proj, m.patch_proj):
            proj.weight.copy_(torch.eye(192))
            proj.bias.zero_()
    out = m(batch)
    assert float(out["cls"]) == 0 and float(out["patch"]) == 0 and float(out["loss"].detach()) == 0


def test_feature_kd_matches_mse_and_decreases(batch):
    torch.manual_seed(0)
    m = FeatureKD(tiny_vit(), tiny_vit("vit_small_patch16_224"))
    with torch.no_grad():  # independent MSE of the projected student against the teacher
        t_cls, t_tok, _ = encode(m.teacher, batch.global_view(0))
        s_cls, s_tok, _ = encode(m.student, batch.global_view(0))
        want_cls = float(((m.cls_proj(s_cls) - t_cls) ** 2).mean())
        want_patch = float(((m.patch_proj(s_tok) - t_tok) ** 2).mean())
    out = m(batch)
    assert float(out["cls"]) == pytest.approx(want_cls, rel=1e-5)
    assert float(out["patch"]) == pytest.approx(want_patch, rel=1e-5)
    opt = torch.optim.AdamW(m.param_groups(0.0), lr=1e-3)
    losses = []
    for _ in range(6):
        out = m(batch)
        losses.append(float(out["loss"].detach()))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert losses[0] > 0 and losses[-1] < 0.5 * losses[0]
    assert all(p.grad is None for p in m.teacher.parameters())


def test_random_baseline_trains_nothing_and_registry_resolves_classes():
    assert RandomInit.trains is False and RandomInit.needs_teacher is False
    assert get_method("random") is RandomInit and get_method("feature-kd") is FeatureKD
    assert FeatureKD.needs_teacher
    with pytest.raises(ValueError, match="needs a teacher"):
        FeatureKD(tiny_vit(), None)
