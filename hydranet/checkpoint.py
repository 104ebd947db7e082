"""The project's checkpoint format: a flat dict of plain data and tensors.

Keys: ``format`` ("hydranet"), ``version``, ``config`` (the model's plain-data config),
``model`` (state dict), ``sha256`` (see :func:`content_hash`) and, for training checkpoints,
``optimizer``, ``scheduler``, ``scaler``, ``weighting``, ``step``, ``epoch``, ``rng``, ``best``,
``meta``.

Files are written atomically (serialised in memory, written to a temporary file in the same
folder, fsync, rename) and read with ``torch.load(weights_only=True)``, which never executes
pickled code. Before that, every record of the zip container is checked against its CRC-32
(``torch.load`` does not), and a Hydranet checkpoint's ``sha256`` is checked against its
config and weights; the config is validated and compared with the tensors' shapes on the
meta device before any real allocation.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from .errors import CheckpointError, ConfigError

FORMAT = "hydranet"
VERSION = 1
PathLike = Union[str, Path]


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save`` to memory, then to a temporary file beside ``path``, fsync, rename over it.

    A crash mid-write leaves the previous file intact; a failed write leaves no temporary file.

    Raises:
        OutputError: naming ``path`` (read-only folder, full disk, a folder or device at ``path``).
    """
    from .data.io import write_bytes_atomic

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getbuffer(), fsync=True)


def verify_zip(path: PathLike) -> None:
    """Check every record of a zip-format torch file against its CRC-32 (legacy files pass).

    Raises:
        CheckpointError: naming the file and the damaged record.
    """
    if not zipfile.is_zipfile(path):
        return  # the legacy (pre-1.6) format has no checksums; torch.load judges it
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged checkpoint file ({exc})") from exc
    if bad is not None:
        raise CheckpointError(f"{path}: damaged checkpoint file: record {bad!r} fails its CRC-32 check")


def safe_load(path: PathLike) -> Any:
    """Load a file saved with ``torch.save`` without executing pickled code.

    Raises:
        CheckpointError: the file is missing, damaged (a record fails its CRC), truncated, not
            a torch file, or carries objects other than tensors and plain data (e.g. code to
            run on unpickling).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist (or is not a regular file)")
    verify_zip(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "GLOBAL" in text or "global" in text.split("WeightsUnpickler error:")[-1]:
            culprit = text.split("WeightsUnpickler error:")[-1].strip().split(".")[0]
            raise CheckpointError(
                f"{path}: refused: the file holds objects other than tensors and plain data "
                f"(it could run code when loaded), so it is not loaded ({culprit})"
            ) from exc
        raise CheckpointError(f"{path}: not a readable torch checkpoint (corrupt or another format)") from exc
    except Exception as exc:  # zip/EOF/OS errors from truncated, foreign or unreadable files
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint: truncated, damaged or another format "
            f"({type(exc).__name__}: {exc})"
        ) from exc


def content_hash(config: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> str:
    """sha256 of a checkpoint's config (as sorted JSON) and weights (name, dtype, shape, bytes)."""
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode("utf-8"))
    for name in sorted(weights):
        t = weights[name]
        digest.update(f"\0{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def model_checkpoint(model, **extra) -> dict:
    """The checkpoint dict of ``model`` (a HydraNet built from a config)."""
    config = dict(model.config)
    config["model"] = {**config["model"], "encoder_weights": None}  # weights are in the file
    weights = model.state_dict()
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": config,
        "model": weights,
        "sha256": content_hash(config, weights),
        **extra,
    }


def save_model(model, path: PathLike, **extra) -> None:
    """Write ``model`` (config + weights + extras) atomically in the project's format."""
    atomic_save(model_checkpoint(model, **extra), path)


def read_checkpoint(path: PathLike) -> dict:
    """Load and validate a checkpoint of the project's own format (CRC, structure, content hash)."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, Mapping) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
            hint = " It looks like an original Multi-Task RefineNet checkpoint: run `hydranet convert SRC DST` first."
        raise CheckpointError(f"{path}: not a Hydranet checkpoint (no format={FORMAT!r} key).{hint}")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise CheckpointError(f"{path}: checkpoint version must be a non-negative integer, got {version!r}")
    if version > VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version} is newer than this Hydranet ({VERSION})")
    for key in ("config", "model"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    if not isinstance(ckpt["config"], Mapping):
        kind = type(ckpt["config"]).__name__
        raise CheckpointError(f"{path}: the checkpoint's 'config' must be a mapping, got {kind}")
    weights = ckpt["model"]
    if not isinstance(weights, Mapping) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: the checkpoint's 'model' must map names to tensors")
    if "sha256" in ckpt:  # files written before the hash existed carry none (their CRCs are checked)
        if ckpt["sha256"] != content_hash(ckpt["config"], weights):
            raise CheckpointError(
                f"{path}: content hash mismatch: the config or weights differ from what was "
                "written (damaged or edited file)"
            )
    return ckpt


def checked_config(path: PathLike, ckpt: Mapping[str, Any]) -> dict:
    """The validated config of a checkpoint read by :func:`read_checkpoint`.

    ``model.encoder_weights`` is cleared: the file holds every weight, nothing is downloaded.
    """
    from .config import load_config

    try:
        cfg = load_config(ckpt["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid config inside the checkpoint: {exc}") from exc
    cfg["model"]["encoder_weights"] = None
    return cfg


def check_weight_shapes(path: PathLike, cfg: Mapping[str, Any], weights: Mapping[str, torch.Tensor]) -> None:
    """Compare the tensors of a file with the model ``cfg`` describes, built on the meta device
    (no memory is allocated, however large the config says the model is).

    Raises:
        CheckpointError: naming the file and the first missing, unexpected or mis-shaped tensors.
    """
    from .models import build_model

    try:
        with torch.device("meta"):
            expected = {k: tuple(v.shape) for k, v in build_model(cfg, progress=False).state_dict().items()}
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid config inside the checkpoint: {exc}") from exc
    problems = [f"missing {k}" for k in expected if k not in weights]
    problems += [f"unexpected {k}" for k in weights if k not in expected]
    problems += [
        f"{k}: file {tuple(weights[k].shape)}, config {expected[k]}"
        for k in expected
        if k in weights and tuple(weights[k].shape) != expected[k]
    ]
    if problems:
        more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
        raise CheckpointError(
            f"{path}: weights do not match the config inside the file: {'; '.join(problems[:4])}{more}"
        )


def load_model(path: PathLike, device: Union[str, torch.device] = "cpu"):
    """Rebuild the model from a checkpoint file alone (config inside) and return it in eval mode.

    The config is validated and checked against the tensors' shapes before the model is
    allocated, so a crafted config cannot make it allocate more than the file holds.

    ``path`` may also name one of the authors' models (``"mtrn-nyud-joint"``, see
    :mod:`hydranet.weights.hub`): it is downloaded, verified and converted on first use.
    """
    from .models import build_model
    from .weights.hub import file_or_known_model

    path = file_or_known_model(path)
    ckpt = read_checkpoint(path)
    cfg = checked_config(path, ckpt)
    check_weight_shapes(path, cfg, ckpt["model"])
    model = build_model(cfg, progress=False)
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
    check_weight_shapes(src, checked_config(src, ckpt), ckpt["model"])  # never copy a file that cannot load
    weights = {k: (v.half() if half and v.is_floating_point() else v) for k, v in ckpt["model"].items()}
    slim = {
        "format": FORMAT,
        "version": VERSION,
        "config": ckpt["config"],
        "model": weights,
        "sha256": content_hash(ckpt["config"], weights),
        "meta": {
            **dict(ckpt.get("meta") or {}),
            "source": Path(src).name,
            "trained_steps": ckpt.get("step"),
            "dtype": "float16" if half else "float32",
        },
    }
    atomic_save(slim, dst)
    return slim
