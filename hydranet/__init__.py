"""Hydranet: real-time multi-task dense prediction (MobileNetV2 + RefineNet, many heads).

    import hydranet
    model = hydranet.build_model(config)   # a dict, or the path of a YAML file
    outputs = model(images)                 # {task name: tensor}
    model = hydranet.load_model(path)       # a checkpoint of the project's format, eval mode

Names are imported on first use, so the command line starts without loading torch.
"""

import importlib

from .errors import CheckpointError, ConfigError, DataError, HydranetError, WeightsUnavailableError

__version__ = "0.1.0"

_LAZY = {
    "build_model": ".models",
    "HydraNet": ".models",
    "load_model": ".weights.hub",
    "save_model": ".checkpoint",
    "load_config": ".config",
    "parse_config": ".config",
    "save_config": ".config",
    "TaskSpec": ".tasks",
}
_SUBMODULES = (
    "tasks",
    "kinds",
    "models",
    "losses",
    "data",
    "evaluation",
    "training",
    "inference",
    "tools",
    "weights",
    "visualize",
    "schema",
    "limits",
    "labelsets",
)

__all__ = sorted(_LAZY) + [
    "HydranetError",
    "ConfigError",
    "DataError",
    "CheckpointError",
    "WeightsUnavailableError",
    "__version__",
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hydranet' has no attribute {name!r}")
