"""The project's checkpoint format: a flat dict of plain data and tensors.

Keys: ``format`` ("hydranet"), ``version``, ``config`` (the model's plain-data config),
``model`` (state dict) and, for training checkpoints, ``optimizer``, ``scheduler``,
``scaler``, ``weighting``, ``step``, ``epoch``, ``rng``, ``best``, ``meta``.

Files are written atomically (a temporary file in the same folder, fsync, rename), and
read with ``torch.load(weights_only=True)``, which never executes pickled code.
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from .errors import CheckpointError

FORMAT = "hydranet"
VERSION = 1
PathLike = Union[str, Path]


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over it.

    A crash mid-write leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def safe_load(path: PathLike) -> Any:
    """Load a file saved with ``torch.save`` without executing pickled code.

    Raises:
        CheckpointError: the file is missing, truncated, not a torch file, or carries
            objects other than tensors and plain data (e.g. code to run on unpickling).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text.split("WeightsUnpickler error:")[-1]:
            culprit = text.split("WeightsUnpickler error:")[-1].strip().split(".")[0]
            raise CheckpointError(
                f"{path}: refused: the file holds objects other than tensors and plain data "
                f"(it could run code when loaded), so it is not loaded ({culprit})") from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or another format)") from exc
    except Exception as exc:  # zip/EOF errors from truncated or foreign files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})") from exc


def model_checkpoint(model, **extra) -> dict:
    """The checkpoint dict of ``model`` (a HydraNet built from a config)."""
    config = dict(model.config)
    config["model"] = {**config["model"], "encoder_weights": None}  # weights are in the file
    return {"format": FORMAT, "version": VERSION, "config": config, "model": model.state_dict(), **extra}


def save_model(model, path: PathLike, **extra) -> None:
    """Write ``model`` (config + weights + extras) atomically in the project's format."""
    atomic_save(model_checkpoint(model, **extra), path)


def read_checkpoint(path: PathLike) -> dict:
    """Load and validate a checkpoint of the project's own format."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            hint = " It looks like an original Multi-Task RefineNet checkpoint: run `hydranet convert SRC DST` first."
        raise CheckpointError(f"{path}: not a Hydranet checkpoint (no format={FORMAT!r} key).{hint}")
    if int(ckpt.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {ckpt['version']} is newer than this Hydranet ({VERSION})")
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return ckpt


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """Rebuild the model from a checkpoint file alone (config inside) and return it in eval mode.

    ``path`` may also name one of the authors' models (``"mtrn-nyud-joint"``, see
    :mod:`hydranet.weights.hub`): it is downloaded, verified and converted on first use.
    """
    from .models import build_model
    from .weights.hub import fetch_model, is_known_model

    if is_known_model(str(path)) and not Path(path).is_file():
        path = fetch_model(str(path))
    ckpt = read_checkpoint(path)
    model = build_model(ckpt["config"], progress=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the config inside the file: {exc}") from exc
    return model.to(device).eval()


def slim_checkpoint(src: PathLike, dst: PathLike, half: bool = True) -> dict:
    """Write the inference part of a Hydranet checkpoint: config, weights, meta.

    Drops the training state (optimiser, scheduler, RNG, ...) and, with ``half``, stores
    floating-point weights as fp16 (``load_model`` casts them back to the model's fp32).
    Returns the written checkpoint.
    """
    ckpt = read_checkpoint(src)
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    slim = {"format": FORMAT, "version": VERSION, "config": ckpt["config"], "model": weights,
            "meta": {**dict(ckpt.get("meta") or {}), "source": Path(src).name,
                     "trained_steps": ckpt.get("step"), "dtype": "float16" if half else "float32"}}
    atomic_save(slim, dst)
    return slim
