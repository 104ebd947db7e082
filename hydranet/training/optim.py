"""Optimisers and learning-rate schedules for HydraNet training."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..losses import weighting_param_group
from ..schema.sections import LossSection, TrainSection


def param_groups(model: nn.Module, weighting: nn.Module, train: TrainSection, loss: LossSection) -> list[dict]:
    """Encoder, decoder+heads and weighting parameters in their own groups.

    Norm layers and biases get no weight decay; the weighting's parameters (e.g. the
    uncertainty log-variances) get no weight decay and their own learning rate.
    """
    lr = train.lr
    enc_lr = train.encoder_lr if train.encoder_lr is not None else lr * train.encoder_lr_mult
    wd = train.weight_decay
    groups = []
    for name, module, group_lr in (
        ("encoder", model.encoder, enc_lr),
        ("decoder", model.decoder, lr),
        ("heads", model.heads, lr),
    ):
        decay, no_decay = [], []
        for p in module.parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 else decay).append(p)
        groups.append({"name": name, "params": decay, "lr": group_lr, "weight_decay": wd})
        groups.append({"name": f"{name}_no_decay", "params": no_decay, "lr": group_lr, "weight_decay": 0.0})
    weighting_params = [p for p in weighting.parameters() if p.requires_grad]
    if weighting_params:
        group = weighting_param_group(weighting, loss.log_var_lr or lr)
        group["name"] = "weighting"
        groups.append(group)
    return [g for g in groups if g["params"]]


def build_optimizer(groups: list[dict], train: TrainSection) -> torch.optim.Optimizer:
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=train.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=train.lr)


def lr_factor(step: int, total: int, schedule: str, warmup: int = 0, power: float = 0.9) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based): linear warm-up, then the schedule."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "poly":
        return (1.0 - progress) ** power
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainSection, step: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of ``train``, at ``step``: 0 for a new run; a resumed step for a run
    whose schedule changed (the optimiser's groups then carry ``initial_lr``, the base learning rate)."""
    total, schedule = train.steps, train.schedule
    warmup, power = train.warmup_steps, train.poly_power
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: lr_factor(i, total, schedule, warmup, power), last_epoch=step - 1
    )
