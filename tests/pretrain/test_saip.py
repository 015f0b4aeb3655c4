"""SAIP: CSM (DINO loss, centering, temperatures), the scale-consistent CSR mask and loss,
the token path on kept patches, EMA, and the method end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pretrain_helpers import tiny_vit

from hcbench.pretrain.base import cosine_ramp
from hcbench.pretrain.saip import (
    SAIP,
    CSMHead,
    csm_loss,
    reconstruction_loss,
    scale_consistent_mask,
    teacher_temperature,
)
from hcbench.pretrain.tokens import patchify, vit_forward


def _reference_dino(student, teacher, center, ts, tt):
    """Independent numpy DINO loss: mean over (teacher view i, student view v != i) pairs."""
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    terms = []
    for i, t in enumerate(teacher):
        q = softmax((t.numpy().astype(np.float64) - center.numpy()) / tt)
        for v, s in enumerate(student):
            if v != i:
                log_p = np.log(softmax(s.numpy().astype(np.float64) / ts))
                terms.append((-q * log_p).sum(-1).mean())
    return float(np.mean(terms)), len(terms)


def test_csm_loss_matches_an_independent_dino_loss():
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(4, 32, generator=g) for _ in range(5)]
    teacher = [torch.randn(4, 32, generator=g) for _ in range(2)]
    center = 0.1 * torch.randn(1, 32, generator=g)
    want, n_terms = _reference_dino(student, teacher, center, 0.1, 0.04)
    assert n_terms == 2 * 5 - 2  # same-view pairs skipped
    assert float(csm_loss(student, teacher, center, 0.1, 0.04)) == pytest.approx(want, rel=1e-5)


def test_csm_at_student_equal_teacher_is_the_teacher_entropy_with_zero_gradient():
    # what "zero when student == EMA" means for a cross-entropy: with no centering and equal
    # temperatures the KL part vanishes (loss = teacher entropy) and so does the gradient
    g = torch.Generator().manual_seed(1)
    t = torch.randn(6, 16, generator=g)
    s0, s1 = t.clone().requires_grad_(True), t.clone().requires_grad_(True)
    loss = csm_loss([s0, s1], [t, t], torch.zeros(1, 16), 0.1, 0.1)
    p = F.softmax(t / 0.1, -1)
    entropy = float(-(p * p.log()).sum(-1).mean())
    assert float(loss.detach()) == pytest.approx(entropy, rel=1e-5)
    loss.backward()
    assert s0.grad.abs().max() < 1e-5 and s1.grad.abs().max() < 1e-5
    # a student that differs is pulled towards the teacher: the loss falls over a few steps
    s = torch.zeros(6, 16, requires_grad=True)
    opt = torch.optim.Adam([s], lr=0.1)
    vals = []
    for _ in range(20):
        loss = csm_loss([s, s], [t, t], torch.zeros(1, 16), 0.1, 0.04)
        vals.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert vals[-1] < 0.5 * vals[0]


def test_teacher_temperature_and_momentum_schedules():
    assert teacher_temperature(0.5, 0.07, 0.04, 0.0) == 0.04  # the reference default: no warm-up
    assert teacher_temperature(0.0, 0.07, 0.04, 0.2) == pytest.approx(0.07)
    assert teacher_temperature(0.1, 0.07, 0.04, 0.2) == pytest.approx(0.055)
    assert teacher_temperature(0.3, 0.07, 0.04, 0.2) == 0.04
    assert cosine_ramp(0.996, 1.0, 0.0) == pytest.approx(0.996)
    assert cosine_ramp(0.996, 1.0, 0.5) == pytest.approx(0.998)
    assert cosine_ramp(0.996, 1.0, 1.0) == pytest.approx(1.0)


def test_csm_head_outputs_cosines_to_normalised_prototypes():
    head = CSMHead(16, 64, hidden=32, bottleneck=8)
    out = head(torch.randn(3, 16))
    assert out.shape == (3, 64) and out.abs().max() <= 1 + 1e-5


def test_scale_consistent_mask_follows_the_anchor_mask():
    torch.manual_seed(0)
    keep, removed = scale_consistent_mask((8, 4), (8, 4), 0.75, 3, torch.device("cpu"))
    assert keep.shape == (3, 8) and torch.all(removed.sum(1) == 24)  # same grid: exactly the anchor mask
    assert torch.all(removed.gather(1, keep) == 0)
    torch.manual_seed(0)
    ha, wa, hr, wr = 8, 4, 10, 5  # rescaled by 1.25
    keep, removed = scale_consistent_mask((ha, wa), (hr, wr), 0.75, 4, torch.device("cpu"))
    assert keep.shape == (4, int(50 * 0.25)) and torch.all(removed.sum(1) == 50 - 12)
    assert torch.all(keep[:, 1:] > keep[:, :-1])  # sorted, no duplicates
    # every kept patch sits where the upsampled anchor mask keeps (the region has >= 12 cells)
    torch.manual_seed(0)
    base = torch.zeros(4, ha * wa)
    base.scatter_(1, torch.rand(4, ha * wa).argsort(1)[:, :8], 1.0)
    up = F.interpolate(base.view(4, 1, ha, wa), size=(hr, wr), mode="nearest").flatten(1)
    assert torch.all(up.gather(1, keep) == 1)


def test_reconstruction_loss_counts_removed_patches_only():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(2, 6, 12, generator=g)
    norm = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    removed = torch.tensor([[1, 1, 0, 0, 1, 0], [0, 1, 1, 1, 0, 0]], dtype=torch.float32)
    assert float(reconstruction_loss(norm, target, removed)) == pytest.approx(0.0, abs=1e-6)
    pred = norm.clone()
    pred[removed == 0] += 10.0  # errors on visible patches do not count
    assert float(reconstruction_loss(pred, target, removed)) == pytest.approx(0.0, abs=1e-6)
    pred = torch.zeros_like(norm)
    want = float(((norm ** 2).mean(-1) * removed).sum() / removed.sum())
    assert float(reconstruction_loss(pred, target, removed)) == pytest.approx(want, rel=1e-6)


def test_patchify_is_the_mae_layout():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    p = patchify(x, 2)
    assert p.shape == (2, 6, 12)
    assert torch.equal(p[1, 4], x[1, :, 2:4, 2:4].permute(1, 2, 0).reshape(-1))  # patch (row 1, col 1)


def test_vit_forward_matches_the_backbone_and_masks_tokens():
    torch.manual_seed(0)
    vit = tiny_vit().eval()
    x = torch.rand(2, 3, 64, 32)
    from hcbench.pretrain.tokens import normalize

    f = vit(normalize(x, vit))
    t = vit_forward(vit, x, taps=(1,))
    assert t.grid == (4, 2) and 1 in t.taps
    assert torch.allclose(t.cls, f.embedding, atol=1e-5) and torch.allclose(t.patches, f.tokens(), atol=1e-5)
    # keeping every patch is the full forward; keeping some is the forward of that subset
    all_idx = torch.arange(8).expand(2, 8)
    assert torch.allclose(vit_forward(vit, x, keep=all_idx).patches, f.tokens(), atol=1e-5)
    keep = torch.tensor([[0, 3, 5], [1, 2, 7]])
    sub = vit_forward(vit, x, keep=keep)
    assert sub.patches.shape == (2, 3, 192)
    m = vit.model
    seq = m._pos_embed(m.patch_embed(normalize(x, vit)))
    seq = torch.cat([seq[:, :1], torch.gather(seq[:, 1:], 1, keep[..., None].expand(-1, -1, 192))], 1)
    assert torch.allclose(sub.patches, m.norm(m.blocks(seq))[:, 1:], atol=1e-5)


def _saip():
    torch.manual_seed(0)
    return SAIP(tiny_vit(), None, SAIP.Options.preset("small"))


def test_saip_ema_starts_equal_and_follows_the_momentum():
    m = _saip()
    w = m.student.model.blocks[0].attn.qkv.weight
    w_ema = m.ema["backbone"].model.blocks[0].attn.qkv.weight
    assert torch.equal(w, w_ema) and not w_ema.requires_grad
    before = w_ema.clone()
    with torch.no_grad():
        w.add_(1.0)
    m.after_step(0.0)  # momentum 0.996 at the start
    assert torch.allclose(w_ema, 0.996 * before + 0.004 * w, atol=1e-6)
    assert m.inter_blocks == 2  # depth // 2 + 1, capped at the depth


def test_saip_losses_positive_and_decreasing(batch):
    m = _saip()
    opt = torch.optim.AdamW(m.param_groups(0.0), lr=1e-3, betas=(0.9, 0.95))
    hist = []
    for step in range(6):
        torch.manual_seed(step)
        out = m(batch, step / 6)
        hist.append({k: float(v.detach()) for k, v in out.items()})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.after_step((step + 1) / 6)
    first, last = hist[0], hist[-1]
    assert all(first[k] > 0 for k in ("csm", "csr", "css_inst", "css_part"))
    assert first["css_inst"] == pytest.approx(np.log(2), abs=0.05)  # an uninformed mask predictor
    for k in ("csr", "css_inst", "css_part"):  # the CSM target moves with the EMA and the centre
        assert last[k] < first[k], k
    assert np.isfinite(last["csm"]) and m.center.abs().sum() > 0
    assert first["loss"] == pytest.approx(first["csm"] + first["csr"] + first["css_inst"] + first["css_part"],
                                          rel=1e-5)


def test_saip_without_pasted_masks_skips_css(batch):
    m = _saip()
    batch.canvas_synthetic[:] = False
    out = m(batch, 0.0)
    assert float(out["css_inst"]) == 0 and float(out["css_part"]) == 0 and float(out["csr"]) > 0


def test_saip_needs_a_vit_student():
    from hcbench.backbones.timm_backbone import TimmBackbone

    with pytest.raises(TypeError, match="needs a timm ViT student"):
        SAIP(TimmBackbone("resnet18", img_size=(64, 32)), None, SAIP.Options.preset("small"))
