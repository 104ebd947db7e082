"""Timing helpers: one synchronised call, interleaved rounds over several calls, percentiles."""

from __future__ import annotations

import time
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

__all__ = ["timed_call", "interleaved_times", "percentile", "timed_count"]


def timed_call(fn: Callable[[], object], device: torch.device, events: bool) -> float:
    """Milliseconds one call takes, synchronised (CUDA events when ``events`` and on CUDA)."""
    if device.type == "cuda":
        if events:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end)
        torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        return (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


def interleaved_times(
    calls: dict, device: torch.device, warmup: int, reps: int, events: bool, blocks: int = 4
) -> dict[str, list[float]]:
    """Time each call ``reps`` times, in ``blocks`` rounds over the settings.

    Each round runs every setting for a block of consecutive calls, after one untimed call
    that absorbs the switch (caches, and the previous setting's worker threads still
    spinning), so a load change on a shared machine hits all settings alike.
    """
    for fn in calls.values():
        for _ in range(warmup):
            timed_call(fn, device, events=False)
    blocks = max(1, min(reps, blocks))
    sizes = [reps // blocks + (1 if i < reps % blocks else 0) for i in range(blocks)]
    times = {name: [] for name in calls}
    for size in sizes:
        for name, fn in calls.items():
            timed_call(fn, device, events=False)
            for _ in range(size):
                times[name].append(timed_call(fn, device, events))
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (numpy's linear interpolation), as a float."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def timed_count(items: Iterable) -> tuple[int, float]:
    """Consume ``items`` (each a count of things done, e.g. images) and time it: ``(total, seconds)``."""
    total, t0 = 0, time.perf_counter()
    for n in items:
        total += n
    return total, time.perf_counter() - t0
