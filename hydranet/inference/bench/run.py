"""The measurement: every setting on every (batch, size), timed in interleaved rounds."""

from __future__ import annotations

import copy
import shutil
import statistics
import tempfile
import time
from typing import Callable, Optional, Sequence

import torch

from ...errors import ConfigError
from ...measure import interleaved_times, loadavg, machine_info, percentile
from ..fast import tune_cpu_allocator
from .args import parse_batches, parse_settings, parse_sizes
from .memory import measure_memory
from .runners import Case, Runner, Skip
from .settings import BY_NAME, DEFAULT_SETTINGS, SETTINGS

__all__ = ["ROW_FIELDS", "benchmark"]

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
                case = Case(base, device, size, batch, frame_size or size, workdir, calibration)
                rows.extend(_bench_case(case, settings, warmup, reps, end_to_end, seed, events, log))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_after"] = loadavg()
    machine["allocator_tuned"] = allocator_tuned
    return {
        "machine": machine,
        "settings": {s: SETTINGS[s] for s in settings},
        "timing": "4 rounds over the settings, each an untimed call then reps/4 timed calls per setting; "
        "CUDA events on GPU, perf_counter on CPU; median and p90 of reps",
        "rows": rows,
    }


def _empty_row(setting: str, case: Case, warmup: int, reps: int) -> dict:
    row = dict.fromkeys(ROW_FIELDS)
    h, w = case.size
    row.update(
        setting=setting,
        description=SETTINGS[setting],
        device=str(case.device),
        batch=case.batch,
        size=f"{w}x{h}",
        height=h,
        width=w,
        warmup=warmup,
        reps=reps,
    )
    return row


def _build(name: str, case: Case, row: dict) -> Optional[Runner]:
    """The setting's runner, or None with the row marked skipped or failed."""
    setting = BY_NAME[name]
    start = time.perf_counter()
    try:
        reason = setting.unmet(case.device)
        if reason:
            raise Skip(reason)
        runner = setting.build(case)
    except Skip as exc:
        row.update(status="skipped", reason=str(exc))
        return None
    except Exception as exc:  # a setting that breaks must not take the others with it
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        return None
    row.update(status="ok", setup_s=round(time.perf_counter() - start, 3))
    return runner


def _differences(ref: dict, got: dict) -> dict:
    per_task = {}
    for name, r in ref.items():
        g = got[name].detach().float().cpu().double()
        r = r.detach().float().cpu().double()
        diff = float((g - r).abs().max()) if r.numel() else 0.0
        scale = float(r.abs().max()) if r.numel() else 0.0
        per_task[name] = {"abs": diff, "rel": diff / scale if scale > 0 else diff}
    return per_task


def _compare_outputs(runners: dict, rows: dict, x: torch.Tensor, device: torch.device) -> None:
    """Each runner's outputs on ``x`` against the baseline's; a runner that fails here is dropped."""
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


def _bench_case(case: Case, settings, warmup, reps, end_to_end, seed, events, log) -> list[dict]:
    """The rows of one (batch, size): build, compare, time, measure memory, relate to the baseline."""
    device, batch = case.device, case.batch
    h, w = case.size
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, h, w, generator=gen).to(device)
    frames = (torch.rand(batch, *case.frame_size, 3, generator=gen) * 255).to(torch.uint8).numpy()
    rows, runners = {}, {}
    for name in settings:
        rows[name] = _empty_row(name, case, warmup, reps)
        log(f"[{batch} x {w}x{h}] preparing {name}")
        runner = _build(name, case, rows[name])
        if runner is not None:
            runners[name] = runner
    _compare_outputs(runners, rows, x, device)

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
        mem, method = measure_memory(lambda r=runner: r.model(x), device)
        row = rows[name]
        t = model_times[name]
        row.update(
            model_ms_median=statistics.median(t),
            model_ms_p90=percentile(t, 90),
            peak_memory_mb=None if mem is None else round(mem, 1),
            memory_method=method,
        )
        row["model_fps"] = batch * 1000.0 / row["model_ms_median"]
        if name in e2e_times:
            t = e2e_times[name]
            row.update(e2e_ms_median=statistics.median(t), e2e_ms_p90=percentile(t, 90))
            row["e2e_fps"] = batch * 1000.0 / row["e2e_ms_median"]
    _speedups(rows)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return list(rows.values())


def _speedups(rows: dict) -> None:
    """Each measured row's speed-up over the baseline row, model-only and end to end."""
    base = rows.get("baseline", {})
    for row in rows.values():
        if row["status"] != "ok":
            continue
        if base.get("model_ms_median"):
            row["speedup"] = base["model_ms_median"] / row["model_ms_median"]
        if base.get("e2e_ms_median") and row["e2e_ms_median"]:
            row["e2e_speedup"] = base["e2e_ms_median"] / row["e2e_ms_median"]
