"""Configs: plain dicts (or YAML files) parsed once into typed sections (:mod:`hydranet.schema`).

:func:`parse_config` returns the typed :class:`Config`; :func:`load_config` its canonical
plain-data form (what checkpoints and ONNX files store, and what parses to itself).

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Union

import yaml

from .errors import ConfigError
from .limits import pixel_limit_problem
from .schema.errors import unknown_key_error, validate
from .schema.registry import lookup, registered
from .schema.safe_yaml import check_budget, load_yaml
from .schema.sections import MAX_WIDTH, LossSection, MetaSection, ModelSection, TrainSection
from .schema.types import Section
from .tasks import parse_tasks

ConfigLike = Union[Mapping[str, Any], str, Path, "Config"]

SECTIONS = ("model", "tasks", "data", "train", "loss", "meta")
DATA_SPLITS = ("train", "val")
CONFIG_DIR = Path(__file__).with_name("configs")

__all__ = [
    "Config",
    "ConfigLike",
    "parse_config",
    "load_config",
    "read_yaml",
    "save_config",
    "parse_size",
    "CONFIG_DIR",
    "SECTIONS",
    "MAX_WIDTH",
]


@dataclass(frozen=True)
class Config:
    """A parsed config: typed sections (see :mod:`hydranet.schema`).

    ``data`` maps a split (``train``, ``val``) to its data set's typed options; a section
    the config does not have is its defaults (``data``: empty). ``given`` lists the sections
    the config wrote, so :meth:`to_dict` gives the config back as written, canonicalised.
    """

    model: ModelSection
    tasks: tuple
    data: dict = field(default_factory=dict)
    train: TrainSection = field(default_factory=TrainSection)
    loss: LossSection = field(default_factory=LossSection)
    meta: MetaSection = field(default_factory=MetaSection)
    given: tuple = ()

    def to_dict(self) -> dict:
        """The canonical plain-data config: the model section in full, every other section as
        written (values converted: ``"1e-3"`` -> 0.001), plug-in options as set."""
        model = self.model.model_dump(mode="json")
        model["encoder_options"] = _plain(self.model.encoder_options)
        out: dict = {"model": model, "tasks": [t.to_dict() for t in self.tasks]}
        if "data" in self.given:
            out["data"] = {split: _plain(ds) for split, ds in self.data.items()}
        for name in ("train", "loss", "meta"):
            if name in self.given:
                section = getattr(self, name)
                out[name] = section.to_dict()
                if name == "loss":
                    options = _plain(section.options)
                    out[name].pop("options", None)
                    if options:
                        out[name]["options"] = options
        return out


def _plain(value: Any) -> Any:
    if isinstance(value, list):  # several training sets
        return [_plain(v) for v in value]
    if isinstance(value, dict) and value and all(isinstance(v, Section) for v in value.values()):  # named val sets
        return {k: _plain(v) for k, v in value.items()}
    return value.to_dict() if isinstance(value, Section) else copy.deepcopy(value)


def read_yaml(path: Union[str, Path]) -> dict:
    """Read a YAML mapping; a missing file, bad YAML or a too-large expansion raises ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (binary content; a checkpoint goes to --weights)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror or exc}") from exc
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _resolve(config: ConfigLike) -> Any:
    if isinstance(config, (str, Path)):
        path = Path(config)
        if not path.exists() and (CONFIG_DIR / f"{config}.yaml").is_file():
            path = CONFIG_DIR / f"{config}.yaml"
        return read_yaml(path)
    return config


def parse_config(config: ConfigLike) -> Config:
    """Parse a config (a mapping, a YAML path, or a shipped name such as ``"synthetic"``)
    into typed sections. Every value is checked here, once.

    Raises:
        ConfigError: one line naming the field's path, its value and what was expected.
    """
    raw = _resolve(config)
    if isinstance(raw, Config):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: got {type(raw).__name__}; expected a mapping or a YAML path")
    check_budget(raw)
    for key in raw:
        if key not in SECTIONS:
            raise unknown_key_error("config", key, SECTIONS, "section")
    if raw.get("tasks") is None:
        raise ConfigError("tasks: missing (a config needs at least one task)")
    model = _model_section(raw.get("model"))
    tasks = tuple(parse_tasks(raw["tasks"]))
    data = _data_section(raw.get("data"))
    train = validate(TrainSection, _section(raw, "train"), "train")
    loss = loss_section(_section(raw, "loss"), tasks)
    meta = validate(MetaSection, _section(raw, "meta"), "meta")
    cfg = Config(model, tasks, data, train, loss, meta, given=tuple(k for k in SECTIONS if raw.get(k) is not None))
    _check_batch_pixels(cfg)
    return cfg


def load_config(config: ConfigLike) -> dict:
    """The canonical plain-data form of :func:`parse_config` (a validated copy, model defaults filled in)."""
    return parse_config(config).to_dict()


def _section(raw: Mapping[str, Any], name: str) -> Any:
    value = raw.get(name)
    return {} if value is None else value


def _model_section(raw: Any) -> ModelSection:
    model = validate(ModelSection, {} if raw is None else raw, "model")
    if lookup("decoder", model.decoder) is None:
        raise unknown_key_error("model.decoder", model.decoder, list(registered("decoder")), "decoder")
    options = model.encoder_options
    encoder_options = encoder_options_model(model.encoder)
    typed = validate(encoder_options, {} if options is None else options, "model.encoder_options")
    return model.model_copy(update={"encoder_options": typed})


def encoder_options_model(name: Any) -> type:
    """The ``encoder_options`` schema of encoder ``name`` (every ``timm:MODEL`` shares one);
    ConfigError listing the encoders when ``name`` is none."""
    model = lookup("encoder", name) if isinstance(name, str) else None
    if model is None:
        names = registered("encoder")
        prefixes = [key[:-1] for key in names if key.endswith("*")]
        raise ConfigError(
            f"model.encoder: unknown encoder {name!r}; valid: {', '.join(k for k in names if not k.endswith('*'))}, "
            + "".join(f"or {prefix}MODEL for any timm backbone (pip install 'hydranet[timm]')" for prefix in prefixes)
        )
    return model


def is_named_val(cfg: Any) -> bool:
    """True when ``data.val`` maps names to data sets (rather than being one data set)."""
    return (
        isinstance(cfg, Mapping)
        and "type" not in cfg
        and bool(cfg)
        and all(isinstance(v, Mapping) for v in cfg.values())
    )


def parse_dataset(cfg: Any, where: str = "data") -> Section:
    """The typed options of one data set mapping (its ``type`` picks the schema)."""
    if isinstance(cfg, Section):
        return cfg
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: got {cfg!r:.60}; expected a data set mapping (type, ...)")
    kind = cfg.get("type")
    types = registered("dataset")
    if kind is None:
        raise ConfigError(f"{where}.type: missing (valid: {', '.join(types)})")
    if not isinstance(kind, str):
        raise ConfigError(f"{where}.type: got {kind!r:.60}; expected one of {', '.join(types)}")
    if kind not in types:
        raise unknown_key_error(f"{where}.type", kind, list(types), "data set type")
    return validate(types[kind], cfg, where)


def _data_section(raw: Any) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"data: got {raw!r:.60}; expected a mapping of splits (train, val) to data sets")
    out = {}
    for split, value in raw.items():
        if split not in DATA_SPLITS:
            raise unknown_key_error("data", split, DATA_SPLITS, "split")
        if value is None:
            continue
        if split == "train" and isinstance(value, (list, tuple)):  # several data sets (data.multi)
            if not value:
                raise ConfigError("data.train: an empty list; give at least one data set")
            out[split] = [parse_dataset(v, f"data.train[{i}]") for i, v in enumerate(value)]
        elif split == "val" and is_named_val(value):  # {name: data set}: metrics per set
            out[split] = {str(k): parse_dataset(v, f"data.val.{k}") for k, v in value.items()}
        else:
            out[split] = parse_dataset(value, f"data.{split}")
    return out


def loss_section(raw: Any, tasks: tuple) -> LossSection:
    """The typed ``loss`` section; per-task values are checked against ``tasks`` (when given)."""
    loss = validate(LossSection, raw, "loss")
    strategies = registered("weighting")
    if loss.weighting not in strategies:
        raise unknown_key_error("loss.weighting", loss.weighting, list(strategies), "weighting")
    model = strategies[loss.weighting]
    options = validate(model, {} if loss.options is None else loss.options, "loss.options")
    if loss.initial_log_vars is not None:
        if "initial_log_vars" not in model.model_fields:
            raise ConfigError(f"loss.initial_log_vars: the {loss.weighting} weighting has no log-variances")
        _check_per_task(loss.initial_log_vars, tasks, "loss.initial_log_vars")
    for key in ("initial_log_vars", "weights"):
        value = getattr(options, key, None)
        if value is not None:
            _check_per_task(value, tasks, f"loss.options.{key}")
    return loss.model_copy(update={"options": options})


def _check_per_task(value: Any, tasks: tuple, where: str) -> None:
    names = [t.name for t in tasks]
    if not names:
        return
    if isinstance(value, list) and len(value) != len(names):
        raise ConfigError(f"{where}: {len(value)} values for {len(names)} tasks ({', '.join(names)})")
    if isinstance(value, dict):
        for key in value:
            if key not in names:
                raise unknown_key_error(where, key, names, "task")


def _check_batch_pixels(cfg: Config) -> None:
    train = cfg.data.get("train")
    if train is None:
        return
    for entry in train if isinstance(train, list) else [train]:
        _check_entry_pixels(cfg, entry)


def _check_entry_pixels(cfg: Config, train: Any) -> None:
    transforms = getattr(train, "transforms", None)
    size = getattr(transforms, "size", None) or getattr(train, "size", None)
    if size is not None:
        problem = pixel_limit_problem(size[0], size[1], cfg.train.batch_size)
        if problem:
            raise ConfigError(
                f"train.batch_size: {cfg.train.batch_size} images of {size[1]}x{size[0]}: expected {problem}"
            )


def parse_size(text: Any, minimum: int = 1, what: str = "size") -> tuple[int, int]:
    """``"640x480"`` (WIDTHxHEIGHT) or ``(h, w)`` -> ``(h, w)``, within the pixel limit
    (:mod:`hydranet.limits`); ConfigError naming ``what`` if malformed or too large."""
    if isinstance(text, (list, tuple)) and len(text) == 2:
        h, w = text
    else:
        try:
            w, h = (int(v) for v in str(text).strip().lower().split("x"))
        except ValueError:
            raise ConfigError(f"{what} {text!r}: expected WIDTHxHEIGHT such as 640x480") from None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (h, w)):
        raise ConfigError(f"{what} {text!r}: expected two integers")
    if h < minimum or w < minimum:
        raise ConfigError(f"{what} {text!r}: width and height must be at least {minimum} pixel(s)")
    problem = pixel_limit_problem(h, w)
    if problem:
        raise ConfigError(f"{what} {text!r}: expected {problem}")
    return h, w


def save_config(config: Union[Mapping[str, Any], Config], path: Union[str, Path]) -> None:
    """Write ``config`` as YAML (round-trips through :func:`load_config`)."""
    data = config.to_dict() if isinstance(config, Config) else dict(config)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
