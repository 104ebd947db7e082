"""Configs: plain dicts (or YAML files) validated into a canonical form.

A config has a ``model`` section, a ``tasks`` list and optional sections read by the
commands that need them (``data``, ``train``, ``loss``; ``meta`` holds facts about the
weights, e.g. ``meta.normalization``, the input mean and std every front end applies)::

    model: {encoder: mobilenet_v2, decoder: lightweight, width: 256}
    tasks:
      - {name: segm, kind: segmentation, classes: 40}
      - {name: depth, kind: depth}
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from .errors import ConfigError
from .tasks import parse_tasks

ConfigLike = Union[Mapping[str, Any], str, Path]

SECTIONS = ("model", "tasks", "data", "train", "loss", "meta")
MODEL_DEFAULTS = {
    "encoder": "mobilenet_v2",
    "encoder_weights": None,
    "encoder_options": {},
    "decoder": "lightweight",
    "width": 256,
    "crp_stages": None,  # None = the decoder's own default (4 light-weight, 2 full)
}
CONFIG_DIR = Path(__file__).with_name("configs")
MAX_WIDTH = 4096  # decoder channels; far above any real model, far below an allocation attack
MAX_WIDTH_MULT = 4.0
MAX_CRP_STAGES = 16

_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


def check_field(
    where: str,
    value: Any,
    kind: str,
    low: Any = None,
    high: Any = None,
    low_open: bool = False,
    optional: bool = False,
    choices: Any = None,
) -> Any:
    """Validate one config value and return it (numeric text such as ``"1e-3"``, which YAML
    reads as a string, is accepted for numbers and returned as a float).

    Args:
        where: the field's name in messages, e.g. ``train.lr``.
        kind: ``int``, ``float``, ``bool`` or ``str``.
        low, high: inclusive bounds (``low_open``: the lower bound is excluded).
        optional: None is allowed.
        choices: the allowed values.

    Raises:
        ConfigError: naming the field and the value.
    """
    if value is None and optional:
        return None
    if choices is not None:
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    ok = True
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                ok = False
        ok = ok and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{where}: must be {_TYPE_WORDS[kind]}{' or null' if optional else ''}, got {value!r}")
    below = low is not None and (value <= low if low_open else value < low)
    if below or (high is not None and value > high):
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        raise ConfigError(f"{where}: must be {' and '.join(b for b in (lo, hi) if b)}, got {value!r}")
    return value


def read_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML mapping; a missing file or bad YAML raises ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (binary content; a checkpoint goes to --weights)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(config: ConfigLike) -> dict:
    """Return a validated deep copy of ``config`` (a mapping or a YAML path) with defaults filled in.

    A bare name such as ``"synthetic"`` refers to a config shipped in ``hydranet/configs``.
    """
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.exists() and (CONFIG_DIR / f"{config}.yaml").is_file():
            path = CONFIG_DIR / f"{config}.yaml"
        config = read_yaml(path)
    if not isinstance(config, Mapping):
        raise ConfigError(f"config must be a mapping or a YAML path, got {type(config).__name__}")
    cfg = copy.deepcopy(dict(config))
    unknown = set(cfg) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown config section(s) {sorted(unknown)}; valid: {', '.join(SECTIONS)}")
    if "tasks" not in cfg:
        raise ConfigError("tasks: missing (a config needs at least one task)")
    cfg["model"] = _model_section(cfg.get("model") or {})
    cfg["tasks"] = [t.to_dict() for t in parse_tasks(cfg["tasks"])]
    for section in ("data", "train", "loss", "meta"):
        if section in cfg and cfg[section] is not None and not isinstance(cfg[section], Mapping):
            raise ConfigError(f"{section}: must be a mapping")
    return cfg


def _model_section(raw: Mapping[str, Any]) -> dict:
    from .models.encoders import check_encoder_name
    from .models.refinenet import DECODERS

    if not isinstance(raw, Mapping):
        raise ConfigError("model: must be a mapping")
    unknown = set(raw) - set(MODEL_DEFAULTS)
    if unknown:
        raise ConfigError(f"model: unknown field(s) {sorted(unknown)}; known: {sorted(MODEL_DEFAULTS)}")
    model = {**copy.deepcopy(MODEL_DEFAULTS), **raw}
    check_encoder_name(model["encoder"])
    if model["decoder"] not in DECODERS:
        raise ConfigError(f"model.decoder: unknown decoder {model['decoder']!r}; valid: {', '.join(DECODERS)}")
    check_field("model.width", model["width"], "int", 1, MAX_WIDTH)
    check_field("model.crp_stages", model["crp_stages"], "int", 1, MAX_CRP_STAGES, optional=True)
    if not isinstance(model["encoder_options"], Mapping):
        raise ConfigError("model.encoder_options: must be a mapping")
    model["encoder_options"] = dict(model["encoder_options"])
    if "width_mult" in model["encoder_options"]:
        model["encoder_options"]["width_mult"] = check_field(
            "model.encoder_options.width_mult",
            model["encoder_options"]["width_mult"],
            "float",
            0,
            MAX_WIDTH_MULT,
            low_open=True,
        )
    return model


def parse_size(text: Any, minimum: int = 1, what: str = "size") -> tuple[int, int]:
    """``"640x480"`` (WIDTHxHEIGHT) or ``(h, w)`` -> ``(h, w)``; ConfigError naming ``what`` if malformed."""
    if isinstance(text, (list, tuple)) and len(text) == 2:
        h, w = text
    else:
        try:
            w, h = (int(v) for v in str(text).strip().lower().split("x"))
        except ValueError:
            raise ConfigError(f"{what} {text!r}: expected WIDTHxHEIGHT such as 640x480") from None
    try:
        h, w = int(h), int(w)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} {text!r}: expected two integers") from None
    if h < minimum or w < minimum:
        raise ConfigError(f"{what} {text!r}: width and height must be at least {minimum} pixel(s)")
    return h, w


def save_config(config: Mapping[str, Any], path: Union[str, Path]) -> None:
    """Write ``config`` as YAML (round-trips through :func:`load_config`)."""
    Path(path).write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
