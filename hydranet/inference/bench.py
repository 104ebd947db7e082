"""Inference benchmarks, measured the way the field reports them, and honestly.

    result = hydranet.inference.bench.benchmark(model, device="cpu", batches=(1,), sizes=((480, 640),))
    print(hydranet.inference.bench.format_table(result))

Every (batch, size) is measured for each **setting** (see :data:`SETTINGS`) in one run:

* ``baseline``: the model as the original network runs: eager fp32, NCHW, ``nn.MaxPool2d``,
  BatchNorm unfolded, under ``torch.no_grad()``. It is always measured (added when not asked
  for): every other row's speed-up and output difference are relative to it.
* ``default``: :func:`hydranet.inference.fast.optimize_for_inference`, what every front end uses.
* ``channels_last``, ``fold_bn``: one rewrite each, to show what each is worth.
* ``compile``: the default path under ``torch.compile`` (Inductor; needs a C++ compiler on
  CPU), with PyTorch's own max pooling, which Inductor generates code for.
* ``onnxruntime``: the model exported to ONNX (:func:`hydranet.inference.export.export_onnx`, dynamic
  batch and size) and run by onnxruntime with all graph optimisations and as many intra-op
  threads as PyTorch uses; ``onnxruntime_static``: the same, exported for the measured batch
  and size only (constant Resize sizes let onnxruntime keep its blocked layout);
  ``onnxruntime_int8``: the dynamic file quantised to int8
  (:func:`hydranet.inference.quantize.quantize_onnx`), calibrated on frames of ``calibration``
  (default: the model's own data; see :func:`hydranet.inference.quantize.calibration_batches`).
  Its output difference is large by nature: judge it by task metrics (``hydranet eval`` on
  the exported files, see docs/benchmarks.md).
* ``fp16``, ``bf16``: the default path in half precision (on CUDA, and on CPUs with native
  kernels for it; elsewhere skipped with the reason).
* ``cuda_graphs``, ``cuda_graphs_fp16``: the default path replayed as a CUDA graph (fixed size).

Settings that cannot run here (CUDA settings on a CPU machine, a missing compiler) become
rows with ``status: "skipped"`` and the reason; a setting that fails becomes ``"failed"``
with the error. Nothing is dropped silently.

**Timing.** Each setting is warmed up, then the settings are timed in 4 rounds; in each
round every setting runs one untimed call (which absorbs the switch: caches, the previous
setting's worker threads still spinning) and then its share of the ``reps`` timed calls.
A load change on a shared machine thus hits all settings alike and the ratios stay fair.
On CUDA each call is timed with CUDA events and synchronised; on CPU with
``time.perf_counter``. Each row reports the median and the 90th
percentile latency and FPS = images per second at the median.

* **model-only** (``model_*`` fields): a float ``N x 3 x H x W`` ImageNet-normalised NCHW
  tensor already on the device -> the model's outputs at input size (any layout or dtype
  conversion the setting needs is inside the timing).
* **end-to-end** (``e2e_*`` fields): ``N`` uint8 ``H x W x 3`` RGB frames in host memory ->
  resize to the input size (when the frame size differs), scale, normalise, to the device ->
  model -> segmentation argmax, depth absolute value, normals normalised to unit length,
  class argmax, dense outputs at frame size -> numpy arrays in host memory.

**Allocator.** On CPU, :func:`hydranet.inference.fast.tune_cpu_allocator` (part of the default path)
is called before anything is measured, so every row, the baseline included, runs with the
same process-wide glibc settings; ``machine.allocator_tuned`` records it.

**Memory** (``peak_memory_mb``): on CUDA, ``torch.cuda.max_memory_allocated`` during one
call minus what was allocated before it (activations and outputs; not the weights). On CPU,
the growth of the process's peak resident set during one call: the peak (``VmHWM``) is reset
by writing 5 to ``/proc/self/clear_refs`` before the call and read from ``/proc/self/status``
after it, with free heap memory first returned to the OS (``malloc_trim``) so the growth
counts the pages the call touches; where that is not possible, ``ru_maxrss`` growth (a lower
bound, 0 when an earlier call already reached a higher peak). onnxruntime keeps its buffers
in its own arena between calls, so its growth is near 0 (its memory is already resident).
``memory_method`` names the method used.

**Correctness** (``max_abs_diff``, ``max_rel_diff``, ``diff_per_task``): each setting's outputs
on the timing input against the baseline's, per task; ``rel`` is the largest absolute
difference divided by the largest magnitude of the baseline's output for that task.
"""

from __future__ import annotations

import copy
import datetime
import gc
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..config import parse_size
from ..data.transforms import Normalization
from ..errors import ConfigError, DataError
from ..limits import MAX_BATCH, pixel_limit_problem
from . import processing

__all__ = [
    "SETTINGS",
    "DEFAULT_SETTINGS",
    "ROW_FIELDS",
    "benchmark",
    "format_table",
    "machine_info",
    "interleaved_times",
    "parse_sizes",
    "parse_batches",
    "parse_settings",
]

SETTINGS = {
    "baseline": "eager fp32, NCHW, nn.MaxPool2d, BatchNorm unfolded (the original network)",
    "default": "optimize_for_inference: BN folded, channels_last, exact separable max pool, "
    "per-channel convs as multiplies, inference_mode",
    "channels_last": "channels_last only",
    "fold_bn": "BatchNorm folding only",
    "compile": "default path under torch.compile (Inductor, weight freezing), native max pool",
    "onnxruntime": "ONNX export (dynamic batch and size) run by onnxruntime (all graph optimisations)",
    "onnxruntime_static": "ONNX export fixed to this batch and size, run by onnxruntime",
    "onnxruntime_int8": "ONNX export (dynamic) quantised to int8 (static QDQ, per-channel weights, calibrated), "
    "run by onnxruntime",
    "fp16": "default path in float16 (CUDA; CPUs with AVX512-FP16/AMX-FP16)",
    "bf16": "default path in bfloat16 (CUDA; CPUs with AVX512-BF16/AMX)",
    "cuda_graphs": "default path replayed as a CUDA graph (fp32, fixed size)",
    "cuda_graphs_fp16": "default path in float16 replayed as a CUDA graph (fixed size)",
}
DEFAULT_SETTINGS = (
    "baseline",
    "default",
    "channels_last",
    "fold_bn",
    "compile",
    "onnxruntime",
    "onnxruntime_static",
    "onnxruntime_int8",
    "fp16",
    "bf16",
    "cuda_graphs",
    "cuda_graphs_fp16",
)
CUDA_ONLY = {"cuda_graphs", "cuda_graphs_fp16"}  # fp16/bf16 also run on CPUs with native kernels

# Every row has every one of these keys (None where a value does not apply).
ROW_FIELDS = (
    "setting",
    "description",
    "status",
    "reason",
    "device",
    "batch",
    "size",
    "height",
    "width",
    "model_ms_median",
    "model_ms_p90",
    "model_fps",
    "speedup",
    "e2e_ms_median",
    "e2e_ms_p90",
    "e2e_fps",
    "e2e_speedup",
    "peak_memory_mb",
    "memory_method",
    "max_abs_diff",
    "max_rel_diff",
    "diff_per_task",
    "setup_s",
    "warmup",
    "reps",
)

# --- argument parsing (shared with the CLI) -----------------------------------------------------


def parse_sizes(text, flag: str = "--size") -> list[tuple[int, int]]:
    """``"640x480,1216x352"`` -> ``[(480, 640), (352, 1216)]``; :class:`ConfigError` naming ``flag`` if malformed."""
    if isinstance(text, (list, tuple)):
        items = list(text)
    else:
        items = [s for s in str(text).split(",") if s.strip()]
    sizes = [parse_size(item, minimum=32, what=flag) for item in items]
    if not sizes:
        raise ConfigError(f"{flag}: give at least one WIDTHxHEIGHT")
    return sizes


def parse_batches(text) -> list[int]:
    """``"1,4"`` -> ``[1, 4]``; :class:`ConfigError` if malformed."""
    items = list(text) if isinstance(text, (list, tuple)) else [s for s in str(text).split(",") if s.strip()]
    try:
        batches = [int(b) for b in items]
    except ValueError:
        raise ConfigError(f"--batch {text!r}: expected positive integers such as 1,4") from None
    if not batches or any(not 1 <= b <= MAX_BATCH for b in batches):
        raise ConfigError(f"--batch {text!r}: expected integers from 1 to {MAX_BATCH} such as 1,4")
    return batches


def check_batch_sizes(batches, sizes) -> None:
    """ConfigError when a batch of a size is above the batch pixel limit (:mod:`hydranet.limits`)."""
    for b in batches:
        for h, w in sizes:
            problem = pixel_limit_problem(h, w, b)
            if problem:
                raise ConfigError(f"--batch {b} with --size {w}x{h}: expected {problem}")


def parse_settings(text) -> list[str]:
    """``"baseline,default"`` -> list; ``"all"`` -> every setting; :class:`ConfigError` for unknown names."""
    items = list(text) if isinstance(text, (list, tuple)) else [s.strip() for s in str(text).split(",") if s.strip()]
    if items == ["all"]:
        return list(DEFAULT_SETTINGS)
    unknown = [s for s in items if s not in SETTINGS]
    if unknown:
        raise ConfigError(f"--settings: unknown setting(s) {unknown}; valid: {', '.join(SETTINGS)} (or all)")
    if not items:
        raise ConfigError("--settings: give at least one setting")
    return list(dict.fromkeys(items))


# --- machine and memory -------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> Optional[list]:
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
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "loadavg": _loadavg(),
        # libgomp's default waiting makes eager PyTorch many times slower while another process
        # holds a core; OMP_WAIT_POLICY=PASSIVE avoids that (see docs/benchmarks.md).
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        import onnxruntime

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


def _measure_memory(call: Callable[[], object], device: torch.device) -> tuple[Optional[float], str]:
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


# --- settings -------------------------------------------------------------------------------------


class Skip(Exception):
    """A setting cannot run on this machine; the message is the reason."""


@dataclass
class _Runner:
    name: str
    model: Callable[[torch.Tensor], dict]  # normalised NCHW input on the device -> outputs
    e2e: Callable[[np.ndarray], dict]  # uint8 frames -> numpy results
    setup_s: float = 0.0


def _has_compiler() -> bool:
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


def _build_runner(
    name: str,
    model,
    device: torch.device,
    size: tuple[int, int],
    batch: int,
    frame_size: tuple[int, int],
    workdir: str,
    calibration=None,
) -> _Runner:
    from .fast import CudaGraphRunner, optimize_for_inference

    tasks = model.tasks
    if name in ("fp16", "bf16") and device.type == "cpu":
        from .fast import cpu_reduced_precision_unsupported

        reason = cpu_reduced_precision_unsupported(torch.float16 if name == "fp16" else torch.bfloat16)
        if reason:
            raise Skip(reason)
    elif name in CUDA_ONLY and device.type != "cuda":
        raise Skip("CUDA graphs need CUDA, which this device is not")

    normalization = Normalization.from_config(getattr(model, "config", None))

    def e2e_from(run, dtype=torch.float32, channels_last=False, host=False):
        # Predictor's own pipeline (hydranet.inference.processing), so the figure is what users run.
        def e2e(frames):
            x, net_size = processing.preprocess(
                frames,
                torch.device("cpu") if host else device,
                size,
                normalization,
                dtype=dtype,
                channels_last=channels_last,
            )
            return processing.postprocess(run(x), tasks, net_size, frame_size)

        return e2e

    start = time.perf_counter()
    if name == "baseline":
        net = model

        def run(x):
            with torch.no_grad():
                return net(x)

        return _Runner(name, run, e2e_from(run), time.perf_counter() - start)

    if name in ("onnxruntime", "onnxruntime_static", "onnxruntime_int8"):
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise Skip("onnxruntime is not installed") from None
        from .export import export_onnx, onnx_runner, onnx_session

        static = name == "onnxruntime_static"
        frames = None
        if name == "onnxruntime_int8":
            if device.type != "cpu":
                raise Skip("int8 (QDQ) is measured on CPU; onnxruntime's CUDA provider runs it through other kernels")
            frames = _calibration_frames(model, calibration)  # before the export: a missing source skips fast
        path = os.path.join(workdir, f"{name}_{batch}_{size[0]}x{size[1]}.onnx")
        export_onnx(model, path, size=size, batch=batch, check=False, static=static)
        if frames is not None:
            from .quantize import quantize_onnx

            quantize_onnx(path, path.replace(".onnx", "_int8.onnx"), frames)
            path = path.replace(".onnx", "_int8.onnx")
        try:
            session = onnx_session(path, str(device))
        except ConfigError as exc:
            raise Skip(str(exc)) from None
        run = onnx_runner(session, list(model.task_names))
        return _Runner(name, run, e2e_from(run, host=True), time.perf_counter() - start)

    options = {
        "default": {},
        "channels_last": dict(fold_bn=False, fast_pool=False, fast_depthwise=False, tap_convs=False),
        "fold_bn": dict(channels_last=False, fast_pool=False, fast_depthwise=False, tap_convs=False),
        "compile": dict(compile=True),
        "fp16": dict(dtype=torch.float16),
        "bf16": dict(dtype=torch.bfloat16),
        "cuda_graphs": {},
        "cuda_graphs_fp16": dict(dtype=torch.float16),
    }[name]
    if name == "compile" and device.type == "cpu" and not _has_compiler():
        raise Skip("torch.compile on CPU needs a C++ compiler (c++/g++/clang++), none found")
    if name == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bfloat16 support")
    fast = optimize_for_inference(model, device=device, **options)
    dtype, cl = fast.dtype, fast.channels_last
    if name.startswith("cuda_graphs"):
        example = torch.zeros(batch, 3, *size, device=device)
        graph = CudaGraphRunner(fast, example)
        run = graph
    else:
        run = fast
        if name == "compile":
            fast(torch.zeros(batch, 3, *size, device=device))  # compile now, not in the warm-up
    return _Runner(name, run, e2e_from(run, dtype, cl), time.perf_counter() - start)


def _calibration_frames(model, calibration) -> list:
    from .quantize import calibration_batches

    source, frames = calibration if calibration else (None, 32)
    try:
        return calibration_batches(model, source, frames)
    except (ConfigError, DataError) as exc:  # no data named, or the named data is not on this machine
        raise Skip(f"no calibration frames: {exc} (hydranet bench --calibration CONFIG_OR_LIST)") from None


# --- timing ---------------------------------------------------------------------------------------


def _timed_call(fn: Callable[[], object], device: torch.device, events: bool) -> float:
    """Milliseconds one call takes, synchronised."""
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


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


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
            _timed_call(fn, device, events=False)
    blocks = max(1, min(reps, blocks))
    sizes = [reps // blocks + (1 if i < reps % blocks else 0) for i in range(blocks)]
    times = {name: [] for name in calls}
    for size in sizes:
        for name, fn in calls.items():
            _timed_call(fn, device, events=False)
            for _ in range(size):
                times[name].append(_timed_call(fn, device, events))
    return times


def _differences(ref: dict, got: dict) -> dict:
    per_task = {}
    for name, r in ref.items():
        g = got[name].detach().float().cpu().double()
        r = r.detach().float().cpu().double()
        diff = float((g - r).abs().max()) if r.numel() else 0.0
        scale = float(r.abs().max()) if r.numel() else 0.0
        per_task[name] = {"abs": diff, "rel": diff / scale if scale > 0 else diff}
    return per_task


def _empty_row(setting: str, device: torch.device, batch: int, size: tuple[int, int], warmup: int, reps: int) -> dict:
    row = dict.fromkeys(ROW_FIELDS)
    row.update(
        setting=setting,
        description=SETTINGS[setting],
        device=str(device),
        batch=batch,
        size=f"{size[1]}x{size[0]}",
        height=size[0],
        width=size[1],
        warmup=warmup,
        reps=reps,
    )
    return row


def benchmark(
    model,
    device="cpu",
    batches: Sequence[int] = (1,),
    sizes: Sequence[tuple[int, int]] = ((480, 640),),
    settings: Sequence[str] = DEFAULT_SETTINGS,
    warmup: int = 5,
    reps: int = 30,
    frame_size: Optional[tuple[int, int]] = None,
    end_to_end: bool = True,
    seed: int = 0,
    tune_allocator: bool = True,
    log: Optional[Callable[[str], None]] = None,
    calibration: Optional[tuple] = None,
) -> dict:
    """Measure ``model`` (a HydraNet) under each setting, for each batch and size.

    Args:
        model: the network; it is not changed (every setting works on its own copy).
        device: ``"cpu"`` or ``"cuda[:N]"``; :class:`ConfigError` if CUDA is asked for and absent.
        batches: batch sizes.
        sizes: ``(height, width)`` input sizes.
        settings: names from :data:`SETTINGS`; ``baseline`` is added when missing.
        warmup: untimed calls per setting before timing.
        reps: timed calls per setting (model-only and end-to-end each).
        frame_size: ``(height, width)`` of the uint8 frames of the end-to-end timing
            (default: the input size, so no resize).
        end_to_end: also time the end-to-end path.
        seed: seed of the random input and frames.
        tune_allocator: on CPU, call :func:`hydranet.inference.fast.tune_cpu_allocator` first. It is
            process-wide, so it applies to every row, the baseline included (the default
            path would otherwise switch it on halfway through the run).
        log: called with progress messages (e.g. ``print``).
        calibration: ``(source, frames)`` for ``onnxruntime_int8``: a config or list file (None:
            the model's own data) and the number of calibration frames (default ``(None, 32)``).

    Returns:
        ``{"machine": {...}, "settings": {...}, "rows": [row, ...]}``; every row has the
        keys of :data:`ROW_FIELDS`.
    """
    log = log or (lambda msg: None)
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: CUDA is not available on this machine (use --device cpu)")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"--device {device}: {exc}") from exc
    sizes = parse_sizes(sizes)
    batches = parse_batches(batches)
    settings = parse_settings(settings)
    if "baseline" not in settings:
        settings = ["baseline"] + settings
    if warmup < 0 or reps < 1:
        raise ConfigError("--warmup must be >= 0 and --reps >= 1")
    from .fast import tune_cpu_allocator

    allocator_tuned = tune_cpu_allocator() if tune_allocator and device.type == "cpu" else False
    machine = machine_info(device)  # before measuring: its date and loadavg are the run's start
    base = copy.deepcopy(model).to(device).float().eval()  # the caller's model stays as it is
    events = device.type == "cuda"
    if events:
        torch.backends.cudnn.benchmark = True  # fixed sizes: let cuDNN pick its fastest kernels (all settings)
    rows = []
    workdir = tempfile.mkdtemp(prefix="hydranet-bench-")
    try:
        for batch in batches:
            for size in sizes:
                rows.extend(
                    _bench_one(
                        base,
                        device,
                        batch,
                        size,
                        settings,
                        warmup,
                        reps,
                        frame_size or size,
                        end_to_end,
                        seed,
                        events,
                        workdir,
                        log,
                        calibration,
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_after"] = _loadavg()
    machine["allocator_tuned"] = allocator_tuned
    return {
        "machine": machine,
        "settings": {s: SETTINGS[s] for s in settings},
        "timing": "4 rounds over the settings, each an untimed call then reps/4 timed calls per setting; "
        "CUDA events on GPU, perf_counter on CPU; median and p90 of reps",
        "rows": rows,
    }


def _bench_one(
    model,
    device,
    batch,
    size,
    settings,
    warmup,
    reps,
    frame_size,
    end_to_end,
    seed,
    events,
    workdir,
    log,
    calibration=None,
) -> list[dict]:
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, h, w, generator=gen).to(device)
    frames = (torch.rand(batch, frame_size[0], frame_size[1], 3, generator=gen) * 255).to(torch.uint8).numpy()
    rows, runners = {}, {}
    for name in settings:
        row = _empty_row(name, device, batch, size, warmup, reps)
        rows[name] = row
        log(f"[{batch} x {w}x{h}] preparing {name}")
        try:
            runner = _build_runner(name, model, device, size, batch, frame_size, workdir, calibration)
        except Skip as exc:
            row.update(status="skipped", reason=str(exc))
            continue
        except Exception as exc:  # a setting that breaks must not take the others with it
            row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
            continue
        runners[name] = runner
        row.update(status="ok", setup_s=round(runner.setup_s, 3))

    # Outputs against the baseline, on the timing input.
    reference = runners["baseline"].model(x) if "baseline" in runners else None
    for name, runner in list(runners.items()):
        try:
            out = runner.model(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        except Exception as exc:
            rows[name].update(status="failed", reason=f"{type(exc).__name__}: {exc}")
            del runners[name]
            continue
        if reference is not None:
            per_task = _differences(reference, out)
            rows[name].update(
                diff_per_task=per_task,
                max_abs_diff=max(d["abs"] for d in per_task.values()),
                max_rel_diff=max(d["rel"] for d in per_task.values()),
            )

    log(f"[{batch} x {w}x{h}] timing {', '.join(runners)} (model only, {reps} calls each in 4 rounds)")
    model_times = interleaved_times(
        {n: (lambda r=r: r.model(x)) for n, r in runners.items()}, device, warmup, reps, events
    )
    e2e_times = {}
    if end_to_end:
        log(f"[{batch} x {w}x{h}] timing end to end")
        e2e_times = interleaved_times(
            {n: (lambda r=r: r.e2e(frames)) for n, r in runners.items()},
            device,
            max(1, warmup // 2),
            reps,
            events=False,
        )
    for name, runner in runners.items():
        mem, method = _measure_memory(lambda r=runner: r.model(x), device)
        row = rows[name]
        t = model_times[name]
        row.update(
            model_ms_median=statistics.median(t),
            model_ms_p90=_percentile(t, 90),
            peak_memory_mb=None if mem is None else round(mem, 1),
            memory_method=method,
        )
        row["model_fps"] = batch * 1000.0 / row["model_ms_median"]
        if name in e2e_times:
            t = e2e_times[name]
            row.update(e2e_ms_median=statistics.median(t), e2e_ms_p90=_percentile(t, 90))
            row["e2e_fps"] = batch * 1000.0 / row["e2e_ms_median"]
    base = rows.get("baseline", {})
    for row in rows.values():
        if row["status"] != "ok":
            continue
        if base.get("model_ms_median"):
            row["speedup"] = base["model_ms_median"] / row["model_ms_median"]
        if base.get("e2e_ms_median") and row["e2e_ms_median"]:
            row["e2e_speedup"] = base["e2e_ms_median"] / row["e2e_ms_median"]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return list(rows.values())


# --- the table ------------------------------------------------------------------------------------


def _fmt(value, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_table(result: dict) -> str:
    """The rows as a text table, then the skipped and failed settings with their reasons."""
    header = (
        "setting",
        "batch",
        "size",
        "model ms",
        "p90",
        "FPS",
        "speed-up",
        "e2e ms",
        "e2e FPS",
        "e2e x",
        "peak MB",
        "max abs diff",
        "max rel diff",
    )
    lines = []
    table = [header]
    notes = []
    for row in result["rows"]:
        if row["status"] != "ok":
            notes.append(f"  {row['setting']} ({row['batch']} x {row['size']}): {row['status']}: {row['reason']}")
            table.append((row["setting"], str(row["batch"]), row["size"]) + (row["status"],) + ("",) * 9)
            continue
        table.append(
            (
                row["setting"],
                str(row["batch"]),
                row["size"],
                _fmt(row["model_ms_median"], ".1f"),
                _fmt(row["model_ms_p90"], ".1f"),
                _fmt(row["model_fps"], ".1f"),
                _fmt(row["speedup"], ".2f") + "x" if row["speedup"] else "-",
                _fmt(row["e2e_ms_median"], ".1f"),
                _fmt(row["e2e_fps"], ".1f"),
                _fmt(row["e2e_speedup"], ".2f") + "x" if row["e2e_speedup"] else "-",
                _fmt(row["peak_memory_mb"], ".0f"),
                _fmt(row["max_abs_diff"], ".2e"),
                _fmt(row["max_rel_diff"], ".2e"),
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(widths[j]) if j < 3 else c.rjust(widths[j]) for j, c in enumerate(r)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    m = result.get("machine", {})
    lines.append("")
    lines.append(
        f"{m.get('cpu')} ({m.get('cpu_count')} cpus, {m.get('torch_threads')} torch threads), "
        f"torch {m.get('torch')}" + (f", {m['gpu']}" if m.get("gpu") else "")
    )
    lines.append(
        "speed-up and diff are relative to the baseline row of the same batch and size; "
        "e2e = uint8 frame -> results in host memory"
    )
    if notes:
        lines.append("not measured:")
        lines.extend(notes)
    return "\n".join(lines)
