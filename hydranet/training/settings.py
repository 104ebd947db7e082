"""The ``train`` and ``loss`` config sections: defaults, validation and command-line overrides."""

from __future__ import annotations

import copy
from typing import Any, Mapping

import yaml

from ..config import check_field
from ..errors import ConfigError
from ..losses import STRATEGIES

TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 2000,  # optimiser steps
    "batch_size": 8,
    "optimizer": "adamw",  # adamw | sgd
    "lr": 1e-3,  # decoder and heads
    "encoder_lr": None,  # None = lr * encoder_lr_mult
    "encoder_lr_mult": 0.1,
    "weight_decay": 1e-4,
    "momentum": 0.9,  # SGD only
    "schedule": "poly",  # poly | cosine | constant
    "poly_power": 0.9,
    "warmup_steps": 0,
    "accumulate": 1,  # micro-batches per optimiser step
    "amp": "none",  # none | fp16 | bf16 (CUDA only)
    "channels_last": False,  # NHWC weights and inputs (see docs/benchmarks.md, training throughput)
    "compile": False,  # torch.compile the training forward (Inductor; needs a C++ compiler on CPU)
    "max_grad_norm": None,  # global gradient clipping, on top of the head-wise option
    "val_every": 500,  # steps between validations (and best.pt updates)
    "ckpt_every": 500,  # steps between last.pt writes (also written at the end)
    "log_every": 10,
    "monitor": "loss",  # "loss" (val loss, min) or "task/metric" (e.g. segm/miou, max)
    "on_nan": "stop",  # stop | skip
    "max_skipped": 0.5,  # on_nan skip: a run that skipped more than this fraction of its updates fails
    "sync_bn": False,  # SyncBatchNorm over the ranks (torchrun on CUDA)
    "freeze_bn": False,  # BatchNorm layers in eval mode: fixed running statistics
    "seed": 0,
    "workers": 0,
    "plots": True,
    "tensorboard": True,  # used when tensorboard is installed
}

LOSS_DEFAULTS: dict[str, Any] = {
    "weighting": "uncertainty",  # uncertainty | fixed | equal | gradnorm | dwa | famo | rlw | a gradient method
    "options": {},  # passed to build_weighting (e.g. weights, alpha, temperature)
    "initial_log_vars": None,  # uncertainty: "0,0" or a list, in task order
    "log_var_lr": 0.01,  # learning rate of the weighting's parameters (see weighting_param_group)
    "gradient_normalization": False,  # clip each head's gradient to max_head_grad_norm
    "max_head_grad_norm": 1.0,
}

# field -> check_field arguments: (kind, low, high, {options}); every field of the defaults has one.
_TRAIN_SCHEMA: dict[str, tuple] = {
    "steps": ("int", 1, None, {}),
    "batch_size": ("int", 1, None, {}),
    "optimizer": ("str", None, None, {"choices": ("adamw", "sgd")}),
    "lr": ("float", 0, None, {"low_open": True}),
    "encoder_lr": ("float", 0, None, {"optional": True}),
    "encoder_lr_mult": ("float", 0, None, {}),
    "weight_decay": ("float", 0, None, {}),
    "momentum": ("float", 0, 1, {}),
    "schedule": ("str", None, None, {"choices": ("poly", "cosine", "constant")}),
    "poly_power": ("float", 0, None, {"low_open": True}),
    "warmup_steps": ("int", 0, None, {}),
    "accumulate": ("int", 1, None, {}),
    "amp": ("str", None, None, {"choices": ("none", "fp16", "bf16")}),
    "max_grad_norm": ("float", 0, None, {"low_open": True, "optional": True}),
    "val_every": ("int", 1, None, {}),
    "ckpt_every": ("int", 1, None, {}),
    "log_every": ("int", 1, None, {}),
    "monitor": ("str", None, None, {}),
    "on_nan": ("str", None, None, {"choices": ("stop", "skip")}),
    "max_skipped": ("float", 0, 1, {}),
    "seed": ("int", 0, None, {}),
    "workers": ("int", 0, 256, {}),
    "plots": ("bool", None, None, {}),
    "tensorboard": ("bool", None, None, {}),
    "sync_bn": ("bool", None, None, {}),
    "freeze_bn": ("bool", None, None, {}),
    "channels_last": ("bool", None, None, {}),
    "compile": ("bool", None, None, {}),
}
_LOSS_SCHEMA: dict[str, tuple] = {
    "weighting": ("str", None, None, {"choices": tuple(STRATEGIES)}),
    "log_var_lr": ("float", 0, None, {"low_open": True, "optional": True}),
    "gradient_normalization": ("bool", None, None, {}),
    "max_head_grad_norm": ("float", 0, None, {"low_open": True}),
}


def _section(cfg: Mapping[str, Any], name: str, defaults: Mapping[str, Any], schema: Mapping[str, tuple]) -> dict:
    raw = cfg.get(name) or {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{name}: must be a mapping, got {raw!r}")
    unknown = set(raw) - set(defaults)
    if unknown:
        raise ConfigError(f"{name}: unknown field(s) {sorted(unknown)}; known: {sorted(defaults)}")
    merged = {**copy.deepcopy(dict(defaults)), **raw}
    for key, (kind, low, high, options) in schema.items():
        merged[key] = check_field(f"{name}.{key}", merged[key], kind, low, high, **options)
    return merged


def training_settings(cfg: Mapping[str, Any]) -> tuple[dict, dict]:
    """The validated ``train`` and ``loss`` sections of ``cfg``, defaults filled in.

    Raises:
        ConfigError: naming the field and the value (wrong type, out of range, unknown choice).
    """
    train = _section(cfg, "train", TRAIN_DEFAULTS, _TRAIN_SCHEMA)
    loss = _section(cfg, "loss", LOSS_DEFAULTS, _LOSS_SCHEMA)
    if train["sync_bn"] and train["freeze_bn"]:
        raise ConfigError(
            "train.sync_bn and train.freeze_bn: choose one (frozen BatchNorm layers compute "
            "no batch statistics to synchronise)"
        )
    if train["monitor"] != "loss" and "/" not in str(train["monitor"]):
        raise ConfigError(f"train.monitor: 'loss' or 'task/metric', got {train['monitor']!r}")
    if train["optimizer"] == "sgd" and train["momentum"] <= 0:
        raise ConfigError(
            f"train.momentum: SGD here uses Nesterov momentum, which needs momentum > 0, got {train['momentum']!r}"
        )
    if not isinstance(loss["options"], Mapping):
        raise ConfigError(f"loss.options: must be a mapping, got {loss['options']!r}")
    return train, loss


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["train.lr: 0.001 -> 0.5", ...]``: the fields whose effective values differ between two
    configs (defaults of ``train``/``loss`` filled in; ``meta`` and ``model.encoder_weights``,
    which a resume does not use, left out)."""
    import json

    from .logger import flatten

    def effective(cfg: Mapping[str, Any]) -> dict:
        cfg = json.loads(json.dumps(dict(cfg), default=str))  # tuples and lists alike
        try:
            cfg["train"], cfg["loss"] = training_settings(cfg)
        except ConfigError:
            pass  # compared as written
        cfg.pop("meta", None)
        flat = flatten(cfg)
        flat.pop("model/encoder_weights", None)
        return {k.replace("/", "."): v for k, v in flat.items()}

    a, b = effective(old), effective(new)
    missing = "(unset)"
    return [
        f"{key}: {a.get(key, missing)!r} -> {b.get(key, missing)!r}"
        for key in sorted(set(a) | set(b))
        if a.get(key, missing) != b.get(key, missing)
    ]


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` overrides (values parsed as YAML: 3, 1e-3, true, [1, 2])."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = str(getattr(exc, "problem", "") or exc).strip()
            raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({problem})") from None
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
