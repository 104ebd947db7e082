"""The bench settings, each declared once: name, description, device, needs, runner builder.

Settings that cannot run here become rows with ``status: "skipped"`` and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .runners import (
    Case,
    Runner,
    compiler_on_cpu,
    eager,
    fast_path,
    onnx_file,
    onnxruntime_installed,
    reduced_precision,
)

__all__ = ["Setting", "ALL", "BY_NAME", "SETTINGS", "DEFAULT_SETTINGS"]

Check = Callable[[torch.device], Optional[str]]  # the reason a setting cannot run on a device, or None

# What the fast path's one-rewrite settings switch off.
_ONLY_CHANNELS_LAST = dict(fold_bn=False, fast_pool=False, fast_depthwise=False, tap_convs=False)
_ONLY_FOLD_BN = dict(channels_last=False, fast_pool=False, fast_depthwise=False, tap_convs=False)


@dataclass(frozen=True)
class Setting:
    """One way of running the model.

    Attributes:
        name, description: as the rows and ``--settings`` show them.
        build: :class:`~.runners.Case` -> :class:`~.runners.Runner` (may raise
            :class:`~.runners.Skip`).
        needs: checks run before building, in order; the first reason given skips the setting.
        device: ``"cpu"`` or ``"cuda"`` when the setting runs only there (checked after
            ``needs``), with ``off_device`` the reason given elsewhere.
    """

    name: str
    description: str
    build: Callable[[Case], Runner]
    needs: tuple[Check, ...] = ()
    device: Optional[str] = None
    off_device: str = ""

    def unmet(self, device: torch.device) -> Optional[str]:
        """Why this setting cannot run on ``device``, or None."""
        for check in self.needs:
            reason = check(device)
            if reason:
                return reason
        if self.device and device.type != self.device:
            return self.off_device
        return None


_GRAPHS_NEED_CUDA = "CUDA graphs need CUDA, which this device is not"

#: Every setting, in the order of the rows.
ALL = (
    Setting("baseline", "eager fp32, NCHW, nn.MaxPool2d, BatchNorm unfolded (the original network)", build=eager),
    Setting(
        "default",
        "optimize_for_inference: BN folded, channels_last, exact separable max pool, "
        "per-channel convs as multiplies, inference_mode",
        build=fast_path(),
    ),
    Setting("channels_last", "channels_last only", build=fast_path(**_ONLY_CHANNELS_LAST)),
    Setting("fold_bn", "BatchNorm folding only", build=fast_path(**_ONLY_FOLD_BN)),
    Setting(
        "compile",
        "default path under torch.compile (Inductor, weight freezing), native max pool",
        build=fast_path(compile=True),
        needs=(compiler_on_cpu,),
    ),
    Setting(
        "onnxruntime",
        "ONNX export (dynamic batch and size) run by onnxruntime (all graph optimisations)",
        build=onnx_file("onnxruntime"),
        needs=(onnxruntime_installed,),
    ),
    Setting(
        "onnxruntime_static",
        "ONNX export fixed to this batch and size, run by onnxruntime",
        build=onnx_file("onnxruntime_static", static=True),
        needs=(onnxruntime_installed,),
    ),
    Setting(
        "onnxruntime_int8",
        "ONNX export (dynamic) quantised to int8 (static QDQ, per-channel weights, calibrated), run by onnxruntime",
        build=onnx_file("onnxruntime_int8", int8=True),
        needs=(onnxruntime_installed,),
        device="cpu",
        off_device="int8 (QDQ) is measured on CPU; onnxruntime's CUDA provider runs it through other kernels",
    ),
    Setting(
        "fp16",
        "default path in float16 (CUDA; CPUs with AVX512-FP16/AMX-FP16)",
        build=fast_path(dtype=torch.float16),
        needs=(reduced_precision(torch.float16),),
    ),
    Setting(
        "bf16",
        "default path in bfloat16 (CUDA; CPUs with AVX512-BF16/AMX)",
        build=fast_path(dtype=torch.bfloat16),
        needs=(reduced_precision(torch.bfloat16),),
    ),
    Setting(
        "cuda_graphs",
        "default path replayed as a CUDA graph (fp32, fixed size)",
        build=fast_path(graph=True),
        device="cuda",
        off_device=_GRAPHS_NEED_CUDA,
    ),
    Setting(
        "cuda_graphs_fp16",
        "default path in float16 replayed as a CUDA graph (fixed size)",
        build=fast_path(graph=True, dtype=torch.float16),
        device="cuda",
        off_device=_GRAPHS_NEED_CUDA,
    ),
)
BY_NAME = {s.name: s for s in ALL}
#: Setting name -> description.
SETTINGS = {s.name: s.description for s in ALL}
#: What ``--settings all`` measures: every setting.
DEFAULT_SETTINGS = tuple(SETTINGS)
