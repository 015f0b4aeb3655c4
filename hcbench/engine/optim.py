"""Optimizer with layer-wise lr decay, and per-iteration warm-up + step/cosine schedules."""

from __future__ import annotations

import math

import torch
from torch import nn

from hcbench.cards import TaskCard

NO_DECAY_NAMES = ("pos_embed", "cls_token", "reg_token", "mask_token", "relative_position_bias_table")


def param_groups(model: nn.Module, card: TaskCard) -> list[dict]:
    """Parameter groups: backbone layer ``i`` of ``L`` gets ``lr * decay**(L + 1 - i)``; the task
    head gets the base lr; biases, norms and position/class tokens get no weight decay."""
    opt = card.optim
    backbone = getattr(model, "backbone", None)
    num_layers = getattr(backbone, "num_layers", 0)
    backbone_params = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES)
        if id(p) in backbone_params:
            local = name.split("backbone.", 1)[-1]
            layer = backbone.layer_id(local)
            scale = opt.layer_decay ** (num_layers + 1 - layer) * opt.backbone_lr_mult
        else:
            layer, scale = num_layers + 2, 1.0
        key = (layer, no_decay)
        g = groups.setdefault(key, {"params": [], "lr_scale": scale, "weight_decay": 0.0 if no_decay else
                                    opt.weight_decay, "layer": layer})
        g["params"].append(p)
    return [g for _, g in sorted(groups.items())]


def build_optimizer(model: nn.Module, card: TaskCard) -> torch.optim.Optimizer:
    groups = param_groups(model, card)
    for g in groups:
        g["lr"] = card.optim.lr * g["lr_scale"]
    if card.optim.type == "sgd":
        return torch.optim.SGD(groups, lr=card.optim.lr, momentum=card.optim.momentum)
    if card.optim.type == "adam":
        return torch.optim.Adam(groups, lr=card.optim.lr, betas=tuple(card.optim.betas))
    return torch.optim.AdamW(groups, lr=card.optim.lr, betas=tuple(card.optim.betas))


def lr_factor(it: int, card: TaskCard, iters_per_epoch: int, total_iters: int) -> float:
    """Multiplier of the base lr at optimizer step ``it`` (0-based)."""
    s = card.schedule
    warm = min(s.warmup_iters, max(total_iters - 1, 0))
    if it < warm:
        return s.warmup_ratio + (1 - s.warmup_ratio) * it / warm
    if s.scheduler == "cosine":
        span = max(total_iters - warm, 1)
        return 0.5 * (1 + math.cos(math.pi * min(it - warm, span) / span))
    epoch = it / max(iters_per_epoch, 1)
    steps = s.steps
    if s.max_iters is not None and s.epochs:
        # a capped run keeps the schedule's shape: milestones scale with the cap
        steps = [m * total_iters / (s.epochs * max(iters_per_epoch, 1)) for m in s.steps]
    return s.gamma ** sum(epoch >= m for m in steps)


def build_scheduler(optimizer: torch.optim.Optimizer, card: TaskCard, iters_per_epoch: int,
                    total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_factor(it, card, iters_per_epoch, total_iters))
