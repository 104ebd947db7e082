"""``build_dataset(cfg, tasks, train)``: a dataset from a config mapping.

``cfg["type"]`` picks the dataset; the other keys are its arguments, plus ``transforms`` (a
mapping for :func:`~hydranet.data.transforms.build_transforms`; the train pipeline when
``train`` is true, else the eval one). Examples::

    {"type": "synthetic", "num_samples": 512, "size": [64, 64], "seed": 0}
    {"type": "list", "list": "nyud/train.txt", "depth_scale": 5000, "transforms": {"size": [240, 320]}}
    {"type": "kitti", "list": "kitti/train.txt"}
    {"type": "nyud_mat", "mat": "nyu_depth_v2_labeled.mat", "split": "train"}
    {"type": "json", "json": "parts/train.json", "vocab": "parts/vocab.json"}
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..config import check_field
from ..errors import ConfigError
from ..tasks import TaskSpec, parse_tasks
from .jsonset import JsonDataset
from .kitti import KittiDataset
from .listfile import ListDataset
from .nyud import NYUDv2Mat
from .synthetic import SyntheticScenes
from .transforms import IMAGENET, build_transforms

# type -> (class, required keys, optional keys, {config key: argument name})
DATASET_TYPES = {
    "synthetic": (
        SyntheticScenes,
        (),
        ("num_samples", "size", "seed", "split", "fields", "max_objects", "label_dropout"),
        {},
    ),
    "list": (
        ListDataset,
        ("list",),
        ("root", "depth_scale", "fields", "skip_bad", "palette", "columns"),
        {"list": "list_file"},
    ),
    "kitti": (
        KittiDataset,
        ("list",),
        ("root", "depth_scale", "fields", "skip_bad", "palette", "columns"),
        {"list": "list_file"},
    ),
    "nyud_mat": (NYUDv2Mat, ("mat",), ("split", "mapping", "splits", "fields", "skip_bad"), {"mat": "mat_path"}),
    "json": (
        JsonDataset,
        ("json",),
        ("root", "vocab", "fields", "skip_bad", "depth_scale", "palette"),
        {"json": "json_file"},
    ),
}

# Options shared by several dataset types: check_field arguments (kind, low, high, {options}).
_OPTION_SCHEMA = {
    "num_samples": ("int", 1, 10_000_000, {}),
    "seed": ("int", 0, None, {}),
    "depth_scale": ("float", 0, None, {"low_open": True}),
    "skip_bad": ("bool", None, None, {}),
    "max_objects": ("int", 0, 1000, {}),
}
MAX_SIZE = 16384


def _check_options(cfg: Mapping[str, Any], kind: str) -> None:
    """Type and range of the options every dataset type shares (ConfigError naming the field)."""
    for key, (field_kind, low, high, options) in _OPTION_SCHEMA.items():
        if key in cfg:
            check_field(f"data ({kind}).{key}", cfg[key], field_kind, low, high, **options)
    if "size" in cfg:
        size = cfg["size"]
        pair = [size, size] if isinstance(size, int) and not isinstance(size, bool) else size
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise ConfigError(f"data ({kind}).size: must be [height, width], got {size!r}")
        for v in pair:
            check_field(f"data ({kind}).size", v, "int", 1, MAX_SIZE)


def build_dataset(cfg: Mapping[str, Any], tasks: Sequence[TaskSpec], train: bool, normalization=None):
    """Build a dataset from ``cfg`` (see the module docstring) for ``tasks``.

    Defaults that depend on ``train``: the synthetic ``split`` ("train" / "val"), NYUD's
    ``split`` ("train" / "test"), and the synthetic ``num_samples`` (1000 / 200). The synthetic
    set renders at ``size`` (default the transforms' size, else 64 x 64). ``normalization``
    (a :class:`~hydranet.data.transforms.Normalization`, default ImageNet's) is the network's.

    Raises:
        ConfigError: an unknown type (listing the valid ones), a missing or unknown key.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"data: a dataset config must be a mapping, got {type(cfg).__name__}")
    kind = cfg.get("type")
    if kind not in DATASET_TYPES:
        raise ConfigError(f"data.type: unknown dataset type {kind!r}; valid types: {', '.join(DATASET_TYPES)}")
    cls, required, optional, rename = DATASET_TYPES[kind]
    keys = set(cfg) - {"type", "transforms"}
    unknown = sorted(keys - set(required) - set(optional))
    if unknown:
        raise ConfigError(
            f"data ({kind}): unknown key(s) {unknown}; valid: {', '.join(required + optional)}, transforms"
        )
    missing = [k for k in required if cfg.get(k) in (None, "")]
    if missing:
        raise ConfigError(f"data ({kind}): missing key(s) {missing}")
    _check_options(cfg, kind)
    tasks = parse_tasks(list(tasks))
    if cfg.get("transforms") is not None and not isinstance(cfg["transforms"], Mapping):
        raise ConfigError(f"data ({kind}).transforms: must be a mapping, got {cfg['transforms']!r}")
    tf_cfg = dict(cfg.get("transforms") or {})
    kwargs = {rename.get(k, k): cfg[k] for k in keys}
    if kind == "synthetic":
        kwargs.setdefault("split", "train" if train else "val")
        kwargs.setdefault("num_samples", 1000 if train else 200)
        kwargs.setdefault("size", tf_cfg.get("size", (64, 64)))
    if kind == "nyud_mat":
        kwargs.setdefault("split", "train" if train else "test")
    transform = build_transforms(tf_cfg, train=train, normalization=normalization or IMAGENET)
    return cls(tasks=tasks, transform=transform, **kwargs)
