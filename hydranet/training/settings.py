"""The ``train`` and ``loss`` config sections: defaults, validation and command-line overrides."""

from __future__ import annotations

from typing import Any, Mapping, Union

from ..config import Config, loss_section, parse_config
from ..errors import ConfigError
from ..schema.errors import validate
from ..schema.safe_yaml import load_yaml
from ..schema.sections import LossSection, TrainSection
from .logger import flatten

# The defaults, for reference (the schema in hydranet.schema.sections is where they live).
TRAIN_DEFAULTS: dict[str, Any] = TrainSection().model_dump()
LOSS_DEFAULTS: dict[str, Any] = LossSection().model_dump()


def training_settings(cfg: Union[Mapping[str, Any], Config]) -> tuple[TrainSection, LossSection]:
    """The typed ``train`` and ``loss`` sections of ``cfg``, defaults filled in.

    Raises:
        ConfigError: naming the field and the value (wrong type, out of range, unknown choice).
    """
    if isinstance(cfg, Config):
        return cfg.train, cfg.loss
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config: got {type(cfg).__name__}; expected a mapping")
    train = validate(TrainSection, {} if cfg.get("train") is None else cfg["train"], "train")
    return train, loss_section({} if cfg.get("loss") is None else cfg["loss"], ())


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``["train.lr: 0.001 -> 0.5", ...]``: the fields whose effective values differ between two
    configs (both in canonical form, defaults of ``train``/``loss`` filled in; ``meta`` and
    ``model.encoder_weights``, which a resume does not use, left out)."""
    import json

    def effective(cfg: Mapping[str, Any]) -> dict:
        try:
            parsed = parse_config(cfg)
            cfg = parsed.to_dict()  # the same spelling on both sides (e.g. options.mean -> target_mean)
            cfg["train"] = parsed.train.model_dump(mode="json")
            loss = parsed.loss
            cfg["loss"] = {**loss.model_dump(mode="json"), "options": loss.options.model_dump(mode="json")}
        except ConfigError:
            cfg = json.loads(json.dumps(dict(cfg), default=str))  # compared as written
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
        value = load_yaml(text, f"--set {key}")  # the same YAML rules and size budget as a config file
        node = cfg
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section (it is {node!r:.40})")
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
