"""Layer-wise lr decay groups and the warm-up + step/cosine schedules."""

import math

import pytest
import torch
from torch import nn

from hcbench.backbones import build_backbone
from hcbench.cards import TaskCard
from hcbench.engine.optim import build_optimizer, lr_factor, param_groups


def card(**schedule) -> TaskCard:
    base = {"name": "t", "version": 1, "family": "attributes", "dataset": {"name": "d", "split": "val"},
            "input": {"height": 64, "width": 32},
            "optim": {"type": "adamw", "lr": 1e-3, "weight_decay": 0.05, "layer_decay": 0.5},
            "schedule": {"epochs": 10, "batch_size": 4, "warmup_iters": 10, "steps": [5, 8], "gamma": 0.1, **schedule},
            "eval": {"metrics": ["mA"], "primary": "mA"}}
    return TaskCard.model_validate(base)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = build_backbone("vit_tiny", (64, 32))
        self.head = nn.Linear(192, 3)


def test_layer_decay_groups():
    m, c = Model(), card()
    groups = param_groups(m, c)
    scale = {}
    for g in groups:
        for p in g["params"]:
            scale[id(p)] = (g["lr_scale"], g["weight_decay"])
    L = 12
    assert scale[id(m.head.weight)] == (1.0, 0.05)
    assert scale[id(m.head.bias)] == (1.0, 0.0)
    assert scale[id(m.backbone.model.pos_embed)] == (pytest.approx(0.5 ** (L + 1)), 0.0)
    assert scale[id(m.backbone.model.blocks[11].mlp.fc1.weight)] == (pytest.approx(0.5 ** 1), 0.05)
    assert scale[id(m.backbone.model.blocks[0].norm1.weight)] == (pytest.approx(0.5 ** 12), 0.0)
    assert scale[id(m.backbone.model.norm.weight)] == (pytest.approx(1.0), 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(m.parameters()))
    opt = build_optimizer(m, c)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(m.backbone.model.blocks[11].mlp.fc1.weight)] == pytest.approx(5e-4)


def test_step_schedule_with_warmup():
    c = card()
    f = [lr_factor(i, c, iters_per_epoch=10, total_iters=100) for i in range(100)]
    assert f[0] == pytest.approx(0.001) and f[5] == pytest.approx(0.001 + 0.999 * 0.5)
    assert f[10] == 1.0 and f[49] == 1.0 and f[50] == pytest.approx(0.1) and f[80] == pytest.approx(0.01)


def test_capped_run_keeps_schedule_shape_and_cosine():
    c = card(max_iters=20, warmup_iters=0)
    f = [lr_factor(i, c, iters_per_epoch=10, total_iters=20) for i in range(20)]
    assert f[9] == 1.0 and f[10] == pytest.approx(0.1) and f[16] == pytest.approx(0.01)  # 5/10 and 8/10 of 20
    c = card(scheduler="cosine", warmup_iters=0)
    assert lr_factor(50, c, 10, 100) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, c, 10, 100) < 0.01


def test_scheduler_drives_optimizer():
    from hcbench.engine.optim import build_scheduler

    m = nn.Linear(2, 2)
    m.backbone = None
    c = card(warmup_iters=0)
    opt = build_optimizer(m, c)
    sch = build_scheduler(opt, c, iters_per_epoch=10, total_iters=100)
    for _ in range(50):
        opt.step()
        sch.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert torch.isfinite(torch.tensor(opt.param_groups[0]["lr"]))
