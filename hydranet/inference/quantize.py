"""Static int8 quantisation of an exported ONNX file (onnxruntime QDQ, per-channel weights).

    batches = calibration_batches(model, "synthetic", frames=32)   # or a list file / config path
    report = quantize_onnx("model.onnx", "model_int8.onnx", batches)

The fp32 file (:func:`hydranet.inference.export.export_onnx`) is first run through
onnxruntime's quantisation pre-processing (symbolic shape inference and graph optimisation),
then quantised with ``quantize_static``: ``QuantFormat.QDQ``, int8 weights per output channel,
uint8 activations (the u8s8 form x86 VNNI kernels take), ranges from the min/max of the
activations on the calibration frames. Calibration frames are what the model sees: the
dataset's eval transforms and the model's own input normalisation applied to ``frames`` samples of a
validation set. The file keeps the fp32 file's interface and metadata (the Hydranet config).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Optional, Union

import numpy as np

from ..config import CONFIG_DIR, load_config
from ..data import build_dataset
from ..data.transforms import Normalization
from ..errors import ConfigError
from .export import _removed_on_failure
from .onnx_integrity import stamp_hash

__all__ = ["calibration_dataset", "calibration_batches", "quantize_onnx", "DEFAULT_CALIBRATION_FRAMES"]

DEFAULT_CALIBRATION_FRAMES = 32
_CONFIG_SUFFIXES = (".yaml", ".yml")


def _data_section(config: dict) -> Optional[dict]:
    data = config.get("data") or {}
    return data.get("val") or data.get("train")


def calibration_dataset(tasks, source: Union[str, Path, None] = None, model_config: Optional[dict] = None):
    """The dataset calibration frames are drawn from.

    ``source`` is a config (YAML path or shipped name: its ``data.val``, else ``data.train``)
    or a list file (:class:`hydranet.data.listfile.ListDataset` format; only the image column
    is used). Without ``source``, ``model_config``'s data (the config or checkpoint the model
    came from) is used.

    Raises:
        ConfigError: no source given and the model's config names no data.
    """

    normalization = Normalization.from_config(model_config)  # what the network was trained on
    if source is None:
        cfg = _data_section(model_config or {})
        if not cfg:
            raise ConfigError(
                "int8 quantisation needs calibration frames: the model's config names no data "
                "(data.val or data.train); give --calibration CONFIG_OR_LIST"
            )
        return build_dataset(cfg, tasks, train=False, normalization=normalization)
    text = str(source)
    path = Path(text)
    if path.suffix.lower() in _CONFIG_SUFFIXES or (not path.exists() and (CONFIG_DIR / f"{text}.yaml").is_file()):
        cfg = _data_section(load_config(text))
        if not cfg:
            raise ConfigError(f"--calibration {text}: the config names no data (data.val or data.train)")
        return build_dataset(cfg, tasks, train=False, normalization=normalization)
    if not path.is_file():
        raise ConfigError(f"--calibration {text}: no such config or list file")
    return build_dataset({"type": "list", "list": text}, tasks, train=False, normalization=normalization)


def calibration_batches(model, source=None, frames: int = DEFAULT_CALIBRATION_FRAMES) -> list[np.ndarray]:
    """``frames`` normalised images (``1 x 3 x H x W`` float32 arrays) for calibrating ``model``.

    Frames are spread evenly over the dataset (see :func:`calibration_dataset` for ``source``).
    """
    if int(frames) < 1:
        raise ConfigError(f"--calibration-frames must be at least 1, got {frames}")
    dataset = calibration_dataset(model.tasks, source, getattr(model, "config", None))
    if len(dataset) == 0:
        raise ConfigError(f"--calibration {source or 'data'}: the data set is empty")
    count = min(int(frames), len(dataset))
    indices = np.linspace(0, len(dataset) - 1, count).round().astype(int)
    return [dataset[int(i)]["image"].unsqueeze(0).numpy().astype(np.float32) for i in indices]


@contextlib.contextmanager
def _working_dir(path):
    """``os.chdir`` for the block (contextlib.chdir needs Python 3.11)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


class _Reader:
    """A ``CalibrationDataReader``: one ``{"image": batch}`` per call, then None."""

    def __init__(self, batches: Iterable[np.ndarray]):
        self._batches = list(batches)
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {"image": batch}

    def rewind(self):
        self._it = iter(self._batches)


def _preprocess(src: Path, dst: Path) -> bool:
    """onnxruntime's quantisation pre-processing; False (and ``dst`` unwritten) if it fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
        return True
    except Exception:  # symbolic shape inference gives up on some dynamic graphs
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
            return True
        except Exception:
            return False


def quantize_onnx(
    src,
    dst,
    batches: Iterable[np.ndarray],
    per_channel: bool = True,
    preprocess: bool = True,
    activation: str = "uint8",
    metadata: Optional[dict] = None,
) -> dict:
    """Quantise the fp32 ONNX file ``src`` into ``dst`` (QDQ, calibrated on ``batches``).

    Args:
        src: an fp32 file written by :func:`hydranet.inference.export.export_onnx`.
        dst: the int8 file to write.
        batches: normalised ``N x 3 x H x W`` float32 arrays (see :func:`calibration_batches`).
        per_channel: one weight scale per output channel (else one per tensor).
        preprocess: run onnxruntime's quantisation pre-processing first.
        activation: ``uint8`` (x86 u8s8 kernels) or ``int8``.
        metadata: more ``{key: text}`` metadata entries to write into the file.

    Returns:
        ``{"path", "format", "int8", "calibration_frames", "preprocessed", "per_channel", "activation"}``.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    batches = list(batches)
    if not batches:
        raise ConfigError("int8 quantisation: no calibration frames")
    if activation not in ("uint8", "int8"):
        raise ConfigError(f"activation type {activation!r}: use uint8 or int8")
    src, dst = Path(src).resolve(), Path(dst).resolve()
    dst.parent.mkdir(parents=True, exist_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(src), load_external_data=False).metadata_props}
    # onnxruntime's shape inference and calibration write scratch files (sym_shape_infer_temp.onnx,
    # <uuid>.data) into the working directory and may leave them there: work in a temporary one.
    with tempfile.TemporaryDirectory(prefix="hydranet-quant-") as tmp, _working_dir(tmp):
        model_in = src
        done = False
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            done = _preprocess(src, pre)
            model_in = pre if done else src
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(model_in),
            str(out),
            _Reader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(out))
        _add_metadata(model, meta, per_channel, metadata)
        stamp_hash(model)  # the fp32 file's hash was copied above: this one covers the int8 tensors
        tmp_dst = dst.with_name(f".{dst.name}.tmp")
        with _removed_on_failure(tmp_dst, dst):
            onnx.save(model, str(tmp_dst))
            os.replace(tmp_dst, dst)
    return {
        "path": str(dst),
        "format": "onnx",
        "int8": True,
        "calibration_frames": len(batches),
        "preprocessed": done,
        "per_channel": bool(per_channel),
        "activation": activation,
    }


def _add_metadata(model, fp32_meta: dict, per_channel: bool, metadata: Optional[dict]) -> None:
    """The fp32 file's metadata (the Hydranet config travels with the int8 file too), the
    quantisation's description and the caller's ``metadata``, into the int8 ``model``."""
    present = {p.key for p in model.metadata_props}
    for key, value in fp32_meta.items():
        if key not in present:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    entry = model.metadata_props.add()
    entry.key, entry.value = (
        "hydranet_quantization",
        "int8 QDQ static, per-channel weights" if per_channel else "int8 QDQ static, per-tensor weights",
    )
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
