"""``--int8`` for the front ends: quantise a checkpoint once, on the user's own frames, and keep the file.

    path, made = int8_file("model.pt", source_key="clip.mp4 ...", frames=lambda: [rgb, ...])
    predictor = Predictor(path)

The int8 file is the checkpoint exported to ONNX (dynamic batch and size, opset 17) and quantised by
:func:`hydranet.inference.quantize.quantize_onnx` (static QDQ, per-channel weights), with the
input's own frames (a video's, a folder's, the synthetic clip's) as calibration: the model's
normalisation applied to up to :data:`DEFAULT_CALIBRATION_FRAMES` uint8 RGB frames at the
network size. The file is cached next to the checkpoint as
``<stem>.<checkpoint sha256[:16]>.<input key sha1[:8]>.int8.onnx``, so it is made once per
(checkpoint content, input) pair; when that folder is not writable, or is inside the installed
package (the bundled checkpoint), it goes to ``<torch hub dir>/checkpoints/hydranet/int8/``.
The file records its calibration (metadata ``hydranet_calibration``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..assets import ASSETS_DIR
from ..data.transforms import Normalization
from ..errors import ConfigError
from ..weights.hub import cache_dir, load_model
from .export import export_onnx
from .onnx_model import OnnxModel, is_onnx_file
from .processing import preprocess
from .quantize import quantize_onnx

__all__ = ["int8_file", "cache_path", "file_sha256", "DEFAULT_CALIBRATION_FRAMES", "calibration_from_frames"]

DEFAULT_CALIBRATION_FRAMES = 32
# The TorchScript-based exporter (opset 17) writes the same graph about 30x faster than the
# torch.export-based one (seconds instead of a minute or two on 2 cores): what a first demo run waits for.
INT8_EXPORT_OPSET = 17
CALIBRATION_METADATA_KEY = "hydranet_calibration"


def file_sha256(path) -> str:
    """Hex sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _writable(folder: Path) -> bool:

    try:
        if folder.resolve() == Path(ASSETS_DIR).resolve():  # the package's own files stay as shipped
            return False
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def cache_folder(weights: Path) -> Path:
    """Where the int8 file of ``weights`` goes: next to it if that folder is writable, else the cache."""
    if _writable(weights.parent):
        return weights.parent

    return cache_dir() / "int8"


def cache_path(weights, source_key: str) -> Path:
    """The cached int8 file for the checkpoint ``weights`` calibrated on the input ``source_key``."""
    weights = Path(weights)
    digest = file_sha256(weights)[:16]
    key = hashlib.sha1(source_key.encode("utf-8")).hexdigest()[:8]
    stem = weights.name[: -len(".onnx")] if weights.name.lower().endswith(".onnx") else weights.stem
    return cache_folder(weights) / f"{stem}.{digest}.{key}.int8.onnx"


def calibration_from_frames(frames: Sequence[np.ndarray], config: dict, size=None) -> list[np.ndarray]:
    """uint8 RGB frames -> normalised ``1 x 3 x h x w`` float32 arrays, as the predictor feeds the network."""
    import torch

    normalization = Normalization.from_config(config)
    out = []
    for frame in frames:
        x, _ = preprocess([frame], torch.device("cpu"), size, normalization)
        out.append(x.numpy().astype(np.float32))
    return out


def spread(items: Sequence, count: int) -> list:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    idx = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[int(i)] for i in idx]


def _model_and_config(weights: Path):
    """(model or None, config): a checkpoint is loaded; an fp32 ONNX file is quantised directly."""

    if is_onnx_file(weights):
        onnx = OnnxModel(weights)
        if onnx.quantization:
            raise ConfigError(f"--int8: {weights} is already quantised ({onnx.quantization}); drop --int8")
        return None, onnx.config

    model = load_model(weights, device="cpu")
    return model, model.config


def int8_file(
    weights,
    source_key: str,
    frames: Callable[[], Sequence[np.ndarray]],
    size=None,
    calibration_frames: int = DEFAULT_CALIBRATION_FRAMES,
    log: Optional[Callable[[str], None]] = print,
) -> tuple[Path, bool]:
    """The int8 ONNX file of ``weights`` (a checkpoint or an fp32 ONNX file) for the input ``source_key``.

    Args:
        weights: the checkpoint (or fp32 ONNX file).
        source_key: what identifies the input (a resolved path with its size and time, the
            synthetic clip's parameters, a camera's index): part of the cache key.
        frames: called only when the file must be made: uint8 RGB frames of the input
            (up to ``calibration_frames`` of them are used, spread evenly).
        size: the network input size ``(h, w)`` frames are resized to (None: their own).
        log: gets one line saying which file is used and whether it was made now.

    Returns:
        ``(path, made)``: the file, and whether it was made by this call.
    """
    import json

    weights = Path(weights)
    path = cache_path(weights, source_key)
    if path.is_file():
        if log:
            log(f"int8: using {path} (made earlier from {weights.name} on this input's frames)")
        return path, False
    model, config = _model_and_config(weights)
    chosen = spread(list(frames()), max(1, int(calibration_frames)))
    if not chosen:
        raise ConfigError(f"--int8: no frame to calibrate on in {source_key}")
    batches = calibration_from_frames(chosen, config, size)

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hydranet-int8-") as tmp:
        fp32 = weights
        if model is not None:
            fp32 = Path(tmp) / "fp32.onnx"
            h, w = batches[0].shape[-2:]
            export_onnx(model, fp32, opset=INT8_EXPORT_OPSET, size=(max(h, 64), max(w, 64)), check=False)
        quantize_onnx(
            fp32,
            path,
            batches,
            metadata={
                CALIBRATION_METADATA_KEY: json.dumps(
                    {"frames": len(batches), "input": source_key, "weights_sha256": file_sha256(weights)}
                )
            },
        )
    if log:
        log(f"int8: quantised {weights.name} on {len(batches)} frames of this input -> {path} (cached for next runs)")
    return path, True
