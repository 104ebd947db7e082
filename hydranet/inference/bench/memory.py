"""Peak memory of one call: CUDA's allocator statistics, or the process's peak RSS from /proc."""

from __future__ import annotations

import gc
import resource
from typing import Callable, Optional

import torch

__all__ = ["measure_memory"]


def _read_status_kb(key: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _release_free_memory() -> bool:
    """``malloc_trim(0)``: give free heap memory back to the OS, so RSS counts live memory."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def measure_memory(call: Callable[[], object], device: torch.device) -> tuple[Optional[float], str]:
    """MB the call adds at its peak, and how that was measured (see the package docstring)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = call()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        del out
        return peak / 2**20, "cuda max_memory_allocated minus allocated before the call"
    trimmed = _release_free_memory()
    rss = _read_status_kb("VmRSS")
    if rss is not None and _reset_peak_rss():
        out = call()
        peak = _read_status_kb("VmHWM")
        del out
        if peak is not None:
            how = "after malloc_trim, " if trimmed else ""
            return max(0, peak - rss) / 1024, f"cpu peak RSS growth ({how}VmHWM reset via /proc/self/clear_refs)"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = call()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    del out
    return (after - before) / 1024, "cpu ru_maxrss growth (lower bound)"
