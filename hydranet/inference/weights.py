"""Which checkpoint a front end runs: a path or a known model name given by the user, else the
bundled default (shipped inside the package, so it is found in a wheel install too)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ..assets import SYNTHETIC_CHECKPOINT
from ..errors import CheckpointError
from ..weights.hub import KNOWN_MODELS, file_or_known_model

__all__ = ["BUNDLED_WEIGHTS_NAME", "bundled_weights_path", "default_weights_path", "resolve_weights"]

BUNDLED_WEIGHTS_NAME = SYNTHETIC_CHECKPOINT.name


def bundled_weights_path() -> Path:
    """The checkpoint shipped in the package: ``hydranet/assets/hydranet_synthetic.pt``."""
    return SYNTHETIC_CHECKPOINT


def default_weights_path() -> Path:
    """``$HYDRANET_WEIGHTS`` if set, else :func:`bundled_weights_path`."""
    env = os.environ.get("HYDRANET_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return bundled_weights_path()


def resolve_weights(weights: Optional[Union[str, Path]] = None) -> Path:
    """The checkpoint to use: ``weights`` (a file, or a known model name such as
    ``mtrn-kitti-joint``, fetched and converted on first use), else :func:`default_weights_path`.

    Raises:
        CheckpointError: the file does not exist (for the default, the message says how to
            create the bundled checkpoint), or a downloaded model fails its check.
        WeightsUnavailableError: a known model cannot be downloaded (offline).
    """
    if weights:
        path = file_or_known_model(weights)
        if path.is_file():
            return path
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not exist (nor is it a known model name: {', '.join(KNOWN_MODELS)})"
        )
    path = default_weights_path()
    if not path.is_file():
        source = "$HYDRANET_WEIGHTS" if os.environ.get("HYDRANET_WEIGHTS") else "the bundled checkpoint"
        raise CheckpointError(
            f"no --weights given and {source} {str(path)!r} does not exist. Pass --weights CKPT, or create it "
            f"(see weights/README.md): `hydranet train --out runs/synthetic` (the built-in synthetic set), then "
            f"`hydranet convert runs/synthetic/best.pt {path} --half`."
        )
    return path
