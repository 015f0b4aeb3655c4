"""DPAL: each loss on hand-made tensors, the PCA shape mask, D-PaDe routing, and the method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pretrain_helpers import tiny_vit

from hcbench.pretrain.dpal import (
    DPAL,
    DecoderOutput,
    DPaDe,
    global_loss,
    local_loss,
    relation_loss,
    routing_loss,
    shape_mask,
)


def _descends(loss_fn, param: torch.Tensor, steps: int = 30, lr: float = 0.1) -> list[float]:
    opt = torch.optim.Adam([param], lr=lr)
    values = []
    for _ in range(steps):
        loss = loss_fn()
        values.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return values


def test_global_and_local_losses_zero_on_equal_positive_and_decreasing_otherwise():
    g = torch.Generator().manual_seed(0)
    t_cls, t_tok = torch.randn(4, 16, generator=g), torch.randn(4, 12, 16, generator=g)
    w = torch.rand(4, 12, generator=g)
    assert global_loss(t_cls[None].repeat(3, 1, 1), t_cls) == 0
    assert local_loss(t_tok, t_tok, w) == 0
    s_cls = torch.zeros(3, 4, 16, requires_grad=True)
    # MSE against an independent formula: mean over views, images and channels
    assert float(global_loss(s_cls.detach(), t_cls)) == pytest.approx(float((t_cls ** 2).mean()), rel=1e-6)
    vals = _descends(lambda: global_loss(s_cls, t_cls), s_cls)
    assert vals[0] > 0.5 and vals[-1] < 0.2 * vals[0] and all(b <= a for a, b in zip(vals, vals[1:], strict=False))
    s_tok = torch.zeros(4, 12, 16, requires_grad=True)
    expected = float(((t_tok ** 2).mean(-1) * w).sum() / w.sum())
    assert float(local_loss(s_tok.detach(), t_tok, w)) == pytest.approx(expected, rel=1e-6)
    vals = _descends(lambda: local_loss(s_tok, t_tok, w), s_tok)
    assert vals[-1] < 0.2 * vals[0]


def test_local_loss_ignores_tokens_outside_the_mask():
    t = torch.randn(1, 4, 8)
    s = t.clone()
    s[0, 3] += 5.0  # wrong only where the mask is zero
    assert local_loss(s, t, torch.tensor([[1.0, 1.0, 0.5, 0.0]])) == 0
    assert local_loss(s, t, None) > 0


def test_relation_loss_zero_for_identical_similarities_even_across_widths():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 10, 32, generator=g)
    assert float(relation_loss(s, s)) == pytest.approx(0.0, abs=1e-6)
    # a wider teacher with the same token geometry (semi-orthogonal map, any positive scale)
    q, _ = torch.linalg.qr(torch.randn(64, 32, generator=g))  # 64 x 32, orthonormal columns
    teacher = 3.0 * s @ q.T
    assert float(relation_loss(s, teacher)) == pytest.approx(0.0, abs=1e-5)
    assert float(relation_loss(torch.randn(2, 10, 32, generator=g), teacher)) > 0.05


def test_relation_loss_matches_an_independent_kl():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(2, 6, 8, generator=g), torch.randn(2, 6, 12, generator=g)
    tau = 0.1

    def softmax_sim(x):
        x = x.numpy().astype(np.float64)
        x = x / np.linalg.norm(x, axis=-1, keepdims=True)
        z = x @ x.transpose(0, 2, 1) / tau
        off = ~np.eye(z.shape[-1], dtype=bool)
        p = np.zeros_like(z)
        for b in range(z.shape[0]):
            for i in range(z.shape[1]):  # softmax over the other tokens
                e = np.exp(z[b, i][off[i]] - z[b, i][off[i]].max())
                p[b, i][off[i]] = e / e.sum()
        return p, off

    (ps, off), (pt, _) = softmax_sim(s), softmax_sim(t)
    want = np.mean([(pt[b, i][off[i]] * np.log(pt[b, i][off[i]] / ps[b, i][off[i]])).sum()
                    for b in range(2) for i in range(6)])
    assert float(relation_loss(s, t, tau)) == pytest.approx(want, rel=1e-4)
    s = s.clone().requires_grad_(True)
    vals = _descends(lambda: relation_loss(s, t, tau), s, steps=40)
    assert vals[-1] < 0.2 * vals[0]


@pytest.mark.parametrize("fg_rows,fg_cols", [(slice(2, 6), slice(1, 4)), (slice(1, 7), slice(1, 5))])
def test_shape_mask_picks_the_foreground_of_a_hand_made_token_map(fg_rows, fg_cols):
    # 8 x 6 grid; the second case makes the foreground the majority (24 of 48 tokens + border rule)
    g = torch.Generator().manual_seed(3)
    h, w, C = 8, 6, 24
    fg = torch.zeros(h, w, dtype=torch.bool)
    fg[fg_rows, fg_cols] = True
    a, b = torch.randn(C, generator=g), torch.randn(C, generator=g)
    tok = torch.where(fg[..., None], a, b) + 0.05 * torch.randn(h, w, C, generator=g)
    tokens = torch.stack([tok.view(-1, C), -tok.view(-1, C) + 7.0])  # a second image: sign/offset changed
    mask = shape_mask(tokens, (h, w))
    assert mask.shape == (2, h * w) and mask.min() >= 0 and mask.max() <= 1
    for m in mask:
        assert torch.equal(m > 0.5, fg.flatten())
        assert m[fg.flatten()].min() > 0.8 and m[~fg.flatten()].max() < 0.2


def test_shape_mask_of_a_flat_map_is_all_ones():
    assert torch.equal(shape_mask(torch.ones(1, 12, 8), (4, 3)), torch.ones(1, 12))


def test_dpade_shapes_and_soft_weights():
    dec = DPaDe(in_dim=16, out_dim=24, num_heads=4)
    out = dec(torch.randn(5, 7, 16))
    assert out.tokens.shape == (5, 7, 24) and out.logits.shape == (5, 3)
    assert torch.allclose(out.weights.sum(-1), torch.ones(5))
    dec2 = DPaDe(in_dim=48, out_dim=24, num_heads=16, inter_dim=16)  # reduced width (ViT-B students)
    assert dec2(torch.randn(2, 3, 48)).tokens.shape == (2, 3, 24)


def test_router_learns_the_pattern_ids():
    torch.manual_seed(0)
    dec = DPaDe(in_dim=16, out_dim=8, num_heads=4)
    g = torch.Generator().manual_seed(4)
    # three input kinds: CLS-only sequences, person-view tokens, canvas tokens
    inputs = [torch.randn(6, 1, 16, generator=g) + 2.0, torch.randn(6, 8, 16, generator=g),
              torch.randn(6, 16, 16, generator=g) - 2.0]
    opt = torch.optim.Adam(dec.parameters(), lr=3e-3)

    def ce() -> torch.Tensor:
        return torch.cat([routing_loss(dec(x).logits, k) for k, x in enumerate(inputs)]).mean()

    first = float(ce().detach())
    assert first == pytest.approx(math.log(3), abs=0.3)  # uninformed router at the start
    for _ in range(40):
        loss = ce()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(ce().detach()) < 0.2 * first
    for k, x in enumerate(inputs):
        assert torch.all(dec(x).weights.argmax(-1) == k)


class _Identity(torch.nn.Module):
    """A decoder that passes student tokens through and routes perfectly."""

    def forward(self, tokens):
        logits = torch.zeros(tokens.shape[0], 3)
        return DecoderOutput(tokens, logits, logits.softmax(-1))


def _dpal(teacher_name="vit_small_patch16_224", **teacher_kw):
    torch.manual_seed(0)
    return DPAL(tiny_vit(), tiny_vit(teacher_name, **teacher_kw), DPAL.Options.preset("small", inter_dim=32))


def test_dpal_local_and_relation_vanish_when_the_student_is_the_teacher(batch):
    import copy

    teacher = tiny_vit()
    m = DPAL(copy.deepcopy(teacher), teacher, DPAL.Options.preset("small"))
    m.decoder = _Identity()
    out = m(batch, 0.0)
    assert float(out["local"]) == pytest.approx(0.0, abs=1e-6)
    assert float(out["relation"]) == pytest.approx(0.0, abs=1e-5)
    assert float(out["global"]) > 0  # local crops' CLS differ from the person view's


def test_dpal_losses_positive_and_decreasing(batch):
    m = _dpal()
    opt = torch.optim.AdamW(m.param_groups(0.0), lr=1e-3, betas=(0.9, 0.95))
    hist = []
    for step in range(6):
        torch.manual_seed(step)
        out = m(batch, 0.5)
        hist.append({k: float(v.detach()) for k, v in out.items()})
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    first, last = hist[0], hist[-1]
    assert all(first[k] > 0 for k in ("global", "local", "relation", "route"))
    assert last["loss"] < 0.6 * first["loss"]
    assert last["global"] < first["global"] and last["local"] < first["local"]
    assert first["loss"] == pytest.approx(first["global"] + first["local"] + first["relation"] + 0.01 * first["route"],
                                          rel=1e-5)


def test_dpal_routing_weight_schedule_and_teacher_requirement():
    m = _dpal()
    assert m.route_weight(0.0) == 0.1 and m.route_weight(0.099) == 0.1 and m.route_weight(0.1) == 0.01
    with pytest.raises(ValueError, match="needs a teacher"):
        DPAL(tiny_vit(), None)


def test_dpal_with_a_teacher_on_a_different_token_grid(batch):
    m = _dpal("vit_tiny_patch16_224", patch_size=8, depth=1)  # stride-8 teacher: twice the grid
    assert m.teacher.stride == 8
    out = m(batch, 0.0)
    assert torch.isfinite(out["loss"]) and float(out["local"]) > 0
    out["loss"].backward()
    assert all(p.grad is None for p in m.teacher.parameters())
    assert m.student.model.blocks[0].attn.qkv.weight.grad is not None
