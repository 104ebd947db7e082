"""How each bench setting runs the model: a model-only call and an end-to-end call.

A builder takes a :class:`Case` (the model and what is measured) and returns a
:class:`Runner`; it raises :class:`Skip` when the setting cannot run on this machine.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from ...data.transforms import Normalization
from ...errors import ConfigError, DataError
from .. import processing
from ..export import export_onnx, onnx_runner, onnx_session
from ..fast import CudaGraphRunner, cpu_reduced_precision_unsupported, optimize_for_inference
from ..quantize import calibration_batches, quantize_onnx

__all__ = ["Skip", "Case", "Runner", "eager", "fast_path", "onnx_file"]


class Skip(Exception):
    """A setting cannot run on this machine; the message is the reason."""


@dataclass
class Case:
    """One (batch, size) to measure, on one device."""

    model: torch.nn.Module  # the baseline network (eval, fp32, on the device); never changed
    device: torch.device
    size: tuple[int, int]  # (height, width) of the network input
    batch: int
    frame_size: tuple[int, int]  # (height, width) of the uint8 frames timed end to end
    workdir: str  # where exported files go
    calibration: Optional[tuple] = None  # (source, frames) for onnxruntime_int8


@dataclass
class Runner:
    model: Callable[[torch.Tensor], dict]  # normalised NCHW input on the device -> outputs
    e2e: Callable[[np.ndarray], dict]  # uint8 frames -> numpy results


def _end_to_end(run, case: Case, dtype=torch.float32, channels_last=False, host=False):
    """uint8 frames -> numpy results through Predictor's own pipeline
    (:mod:`hydranet.inference.processing`), so the figure is what users run."""
    normalization = Normalization.from_config(getattr(case.model, "config", None))
    tasks = case.model.tasks

    def e2e(frames):
        x, net_size = processing.preprocess(
            frames,
            torch.device("cpu") if host else case.device,
            case.size,
            normalization,
            dtype=dtype,
            channels_last=channels_last,
        )
        return processing.postprocess(run(x), tasks, net_size, case.frame_size)

    return e2e


def eager(case: Case) -> Runner:
    """The network as it is, under ``torch.no_grad()``."""
    net = case.model

    def run(x):
        with torch.no_grad():
            return net(x)

    return Runner(run, _end_to_end(run, case))


def fast_path(graph: bool = False, **options) -> Callable[[Case], Runner]:
    """A builder of :func:`hydranet.inference.fast.optimize_for_inference` with ``options``;
    ``graph``: replayed as a CUDA graph at the case's batch and size."""

    def build(case: Case) -> Runner:
        fast = optimize_for_inference(case.model, device=case.device, **options)
        run = CudaGraphRunner(fast, _zeros(case)) if graph else fast
        if options.get("compile"):
            fast(_zeros(case))  # compile now, not in the warm-up
        return Runner(run, _end_to_end(run, case, fast.dtype, fast.channels_last))

    return build


def _zeros(case: Case) -> torch.Tensor:
    return torch.zeros(case.batch, 3, *case.size, device=case.device)


def onnx_file(name: str, static: bool = False, int8: bool = False) -> Callable[[Case], Runner]:
    """A builder that exports the model to ONNX (``static``: fixed to the case's batch and size;
    ``int8``: then quantised) and runs the file with onnxruntime."""

    def build(case: Case) -> Runner:
        model = case.model
        frames = _calibration_frames(model, case.calibration) if int8 else None  # a missing source skips fast
        path = os.path.join(case.workdir, f"{name}_{case.batch}_{case.size[0]}x{case.size[1]}.onnx")
        export_onnx(model, path, size=case.size, batch=case.batch, check=False, static=static)
        if frames is not None:
            quantize_onnx(path, path.replace(".onnx", "_int8.onnx"), frames)
            path = path.replace(".onnx", "_int8.onnx")
        try:
            session = onnx_session(path, str(case.device))
        except ConfigError as exc:
            raise Skip(str(exc)) from None
        run = onnx_runner(session, list(model.task_names))
        return Runner(run, _end_to_end(run, case, host=True))

    return build


def _calibration_frames(model, calibration) -> list:
    source, frames = calibration if calibration else (None, 32)
    try:
        return calibration_batches(model, source, frames)
    except (ConfigError, DataError) as exc:  # no data named, or the named data is not on this machine
        raise Skip(f"no calibration frames: {exc} (hydranet bench --calibration CONFIG_OR_LIST)") from None


# --- what a setting needs: each check returns the reason it cannot run here, or None ---------------


def onnxruntime_installed(device: torch.device) -> Optional[str]:
    try:
        import onnxruntime  # noqa: F401  (optional and heavy: imported only to see it is there)
    except ImportError:
        return "onnxruntime is not installed"
    return None


def compiler_on_cpu(device: torch.device) -> Optional[str]:
    if device.type == "cpu" and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "torch.compile on CPU needs a C++ compiler (c++/g++/clang++), none found"
    return None


def reduced_precision(dtype: torch.dtype) -> Callable[[torch.device], Optional[str]]:
    """Native kernels for ``dtype`` on this CPU, or bfloat16 support on this GPU."""

    def check(device: torch.device) -> Optional[str]:
        if device.type == "cpu":
            return cpu_reduced_precision_unsupported(dtype)
        if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return "this GPU has no bfloat16 support"
        return None

    return check
