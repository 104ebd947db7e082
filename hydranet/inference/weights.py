"""Which checkpoint a front end runs: a path given by the user, else the bundled default."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from ..errors import CheckpointError

__all__ = ["BUNDLED_WEIGHTS_NAME", "default_weights_path", "resolve_weights"]

BUNDLED_WEIGHTS_NAME = "hydranet_synthetic.pt"


def default_weights_path() -> Path:
    """``$HYDRANET_WEIGHTS`` if set, else the bundled ``<repo>/weights/hydranet_synthetic.pt``."""
    env = os.environ.get("HYDRANET_WEIGHTS")
    if env:
        return Path(env).expanduser()
    import hydranet

    return Path(hydranet.__file__).resolve().parents[1] / "weights" / BUNDLED_WEIGHTS_NAME


def resolve_weights(weights: Optional[Union[str, Path]] = None) -> Path:
    """The checkpoint to use: ``weights`` if given, else :func:`default_weights_path`.

    Raises:
        CheckpointError: the file does not exist; for the default, the message says how to
            create the bundled checkpoint.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
        return path
    path = default_weights_path()
    if not path.is_file():
        source = "$HYDRANET_WEIGHTS" if os.environ.get("HYDRANET_WEIGHTS") else "the bundled checkpoint"
        raise CheckpointError(
            f"no --weights given and {source} {str(path)!r} does not exist. Pass --weights CKPT, or create it "
            f"(see weights/README.md): `hydranet train --out runs/synthetic` (the built-in synthetic set), then "
            f"`hydranet convert runs/synthetic/best.pt {path} --half`.")
    return path
