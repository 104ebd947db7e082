"""What a measurement ran on: CPU, thread counts, versions, load, GPU."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Optional

import torch

__all__ = ["machine_info", "loadavg", "cpu_model"]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (else what :mod:`platform` knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg() -> Optional[list]:
    """1, 5 and 15 minute load averages: other work on the machine skews CPU timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(device: torch.device) -> dict:
    """What the figures were measured on."""
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["hydranet"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("hydranet") else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg": loadavg(),
        # libgomp's default waiting makes eager PyTorch many times slower while another process
        # holds a core; OMP_WAIT_POLICY=PASSIVE avoids that (see docs/benchmarks.md).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        import onnxruntime  # optional, and heavy: only to record its version

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info
