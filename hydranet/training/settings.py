"""The ``train`` and ``loss`` config sections: defaults, validation and command-line overrides."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import yaml

from ..errors import ConfigError

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 2000,             # optimiser steps
    "batch_size": 8,
    "optimizer": "adamw",      # adamw | sgd
    "lr": 1e-3,                # decoder and heads
    "encoder_lr": None,        # None = lr * encoder_lr_mult
    "encoder_lr_mult": 0.1,
    "weight_decay": 1e-4,
    "momentum": 0.9,           # SGD only
    "schedule": "poly",        # poly | cosine | constant
    "poly_power": 0.9,
    "warmup_steps": 0,
    "accumulate": 1,           # micro-batches per optimiser step
    "amp": "none",             # none | fp16 | bf16 (CUDA only)
    "max_grad_norm": None,     # global gradient clipping, on top of the head-wise option
    "val_every": 500,          # steps between validations (and best.pt updates)
    "ckpt_every": 500,         # steps between last.pt writes (also written at the end)
    "log_every": 10,
    "monitor": "loss",         # "loss" (val loss, min) or "task/metric" (e.g. segm/miou, max)
    "on_nan": "stop",          # stop | skip
    "seed": 0,
    "workers": 0,
    "plots": True,
    "tensorboard": True,       # used when tensorboard is installed
}

LOSS_DEFAULTS: dict[str, Any] = {
    "weighting": "uncertainty",   # uncertainty | fixed | equal | gradnorm | dwa
    "options": {},                # passed to build_weighting (e.g. weights, alpha, temperature)
    "initial_log_vars": None,     # uncertainty: "0,0" or a list, in task order
    "log_var_lr": 0.01,           # learning rate of the weighting's parameters (see weighting_param_group)
    "gradient_normalization": False,  # clip each head's gradient to max_head_grad_norm
    "max_head_grad_norm": 1.0,
}

_CHOICES = {
    ("train", "optimizer"): ("adamw", "sgd"),
    ("train", "schedule"): ("poly", "cosine", "constant"),
    ("train", "amp"): ("none", "fp16", "bf16"),
    ("train", "on_nan"): ("stop", "skip"),
}


def _section(cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any]) -> dict:
    raw = cfg.get(name) or {}
    unknown = set(raw) - set(defaults)
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {sorted(unknown)}; known: {sorted(defaults)}")
    merged = {**copy.deepcopy(dict(defaults)), **raw}
    for (section, key), choices in _CHOICES.items():
        if section == name and merged[key] not in choices:
            raise ConfigError(f"{name}.{key}: {merged[key]!r} is not one of {', '.join(choices)}")
    return merged


def training_settings(cfg: Mapping[str, Any]) -> tuple[dict, dict]:
    """The validated ``train`` and ``loss`` sections of ``cfg``, defaults filled in."""
    train = _section(cfg, "train", TRAIN_DEFAULTS)
    loss = _section(cfg, "loss", LOSS_DEFAULTS)
    for key in ("steps", "batch_size", "accumulate", "val_every", "ckpt_every", "log_every"):
        if not isinstance(train[key], int) or train[key] < 1:
            raise ConfigError(f"train.{key}: must be a positive integer, got {train[key]!r}")
    if train["monitor"] != "loss" and "/" not in str(train["monitor"]):
        raise ConfigError(f"train.monitor: 'loss' or 'task/metric', got {train['monitor']!r}")
    return train, loss


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML: 3, 1e-3, true, [1, 2])."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text)
        node = cfg
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = value
    return cfg


def parse_bool(text: str) -> bool:
    """``true/false/1/0/yes/no`` as users of the original trainer type them."""
    lowered = str(text).strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"expected true or false, got {text!r}")
