"""Hydranet: real-time multi-task dense prediction (MobileNetV2 + RefineNet, many heads).

    import hydranet
    model = hydranet.build_model(config)   # a dict, or the path of a YAML file
    outputs = model(images)                 # {task name: tensor}
    model = hydranet.load_model(path)       # a checkpoint of the project's format, eval mode
"""
from .checkpoint import load_model, save_model
from .config import load_config, save_config
from .errors import CheckpointError, ConfigError, DataError, HydranetError, WeightsUnavailableError
from .models import HydraNet, build_model
from .tasks import TaskSpec

__version__ = "0.1.0"

__all__ = ["build_model", "load_model", "save_model", "load_config", "save_config", "HydraNet",
           "TaskSpec", "HydranetError", "ConfigError", "DataError", "CheckpointError",
           "WeightsUnavailableError", "__version__"]


def __getattr__(name):
    # Submodules with heavier imports load on first use: hydranet.losses, hydranet.data, ...
    import importlib

    if name in ("losses", "data", "evaluation", "training", "inference", "export", "bench", "weights", "video"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'hydranet' has no attribute {name!r}")
