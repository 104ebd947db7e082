"""``hydranet bench --e2e``: the video demo's whole path, serial loop against the pipeline, in one run.

    result = demo_benchmark(model, sizes=[(240, 320), (480, 640)], settings=["default", "onnxruntime"])
    print(format_demo_table(result))

For each frame size, the built-in synthetic clip is rendered once and written as an MP4
(H.264 when PyAV is installed): every demo run then **reads** it (decoding), **predicts**,
**draws** and **encodes** an output MP4, exactly as ``hydranet demo --input clip.mp4`` does.
Each **setting** is a predictor:

* ``default``: the checkpoint on the fast PyTorch path (what ``hydranet demo`` runs);
* ``onnxruntime``: the model exported to ONNX (fp32, dynamic size), ``--weights model.onnx``;
* ``onnxruntime_int8``: that file quantised on the clip's own frames, as ``hydranet demo --int8``.

For each setting and **mode** (``serial``: one frame's steps after another; ``pipeline``:
three overlapping threads), the demo runs ``rounds`` times, alternating setting and mode
within each round (A/B/A/B) so a load change on a shared machine hits all alike; the
median over rounds is reported. Each round also times the **model alone** (the network on
a normalised frame already in memory, no other work in the process) for each setting: the
ratio ``end-to-end / model-only`` is what the pipeline is for (1.0 would hide all other work).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from typing import Callable, Optional, Sequence

from ..errors import ConfigError
from ..inference import Predictor
from ..inference.export import export_onnx
from ..inference.int8_cache import INT8_EXPORT_OPSET, calibration_from_frames, spread
from ..inference.quantize import quantize_onnx
from ..measure import aligned_rows, machine_info, timed_count
from .mp4 import open_video_writer
from .video import SyntheticSource, VideoSource, run_demo

__all__ = ["DEMO_SETTINGS", "demo_benchmark", "format_demo_table"]

DEMO_SETTINGS = {
    "default": "checkpoint on the fast PyTorch path (hydranet demo)",
    "onnxruntime": "fp32 ONNX file, onnxruntime (hydranet demo --weights model.onnx)",
    "onnxruntime_int8": "int8 ONNX file calibrated on the clip's frames (hydranet demo --int8)",
}
MODES = ("serial", "pipeline")


def _predictor(setting: str, model, frames: list, workdir: str, size, device="cpu"):

    if setting == "default":
        return Predictor(model, device=device, tune_allocator=True)
    if setting == "onnxruntime_int8" and str(device) != "cpu":
        raise ConfigError("--e2e: onnxruntime_int8 runs on the CPU; leave it out of --settings on a GPU")

    path = os.path.join(workdir, f"{setting}_{size[0]}x{size[1]}.onnx")
    int8 = setting == "onnxruntime_int8"  # exported as hydranet demo --int8 does; fp32 as hydranet export
    export_onnx(model, path, size=size, check=False, **({"opset": INT8_EXPORT_OPSET} if int8 else {}))
    if int8:
        int8_path = path.replace(".onnx", ".int8.onnx")
        quantize_onnx(path, int8_path, calibration_from_frames(spread(frames, 32), model.config))
        path = int8_path
    return Predictor(path, device=device, tune_allocator=True)


def _model_only_fps(predictor, frames: list) -> float:
    """Frames per second of the network alone on these frames (normalised input already in memory)."""
    inputs = [predictor.preprocess([f])[0] for f in frames]
    predictor._run_model(inputs[0])  # warm

    def calls():
        for x in inputs:
            predictor._run_model(x)
            yield 1

    count, seconds = timed_count(calls())
    return count / seconds


def demo_benchmark(
    model,
    sizes: Sequence[tuple[int, int]] = ((240, 320), (480, 640)),
    settings: Sequence[str] = ("default", "onnxruntime", "onnxruntime_int8"),
    frames: int = 48,
    rounds: int = 2,
    warmup: int = 2,
    codec: str = "h264",
    log: Optional[Callable[[str], None]] = None,
    device="cpu",
) -> dict:
    """Time the demo path for each size, setting and mode (see the module docstring).

    Returns ``{"machine", "rows", "rounds"}``: one row per (size, setting, mode) with
    ``e2e_fps`` (median over rounds), ``model_fps_in_run`` (the predictor's own model rate
    during the demo), ``model_only_fps`` (the isolated rate, median over rounds) and
    ``e2e_vs_model_only``; ``rounds`` holds every single measurement. ``device``: where the
    predictors run (``cuda``: the fast path and onnxruntime's CUDA provider).
    """
    import torch

    log = log or (lambda msg: None)
    unknown = [s for s in settings if s not in DEMO_SETTINGS]
    if unknown or not settings:
        raise ConfigError(f"--settings with --e2e: unknown {unknown}; valid: {', '.join(DEMO_SETTINGS)}")
    if rounds < 1 or frames < 2:
        raise ConfigError("--e2e needs at least 1 round (--reps) and 2 frames")
    machine = machine_info(torch.device(device))
    workdir = tempfile.mkdtemp(prefix="hydranet-demobench-")
    rows, measurements = [], []
    try:
        for size in sizes:
            label = f"{size[1]}x{size[0]}"
            clip, clip_path = _write_clip(size, frames, workdir, codec)
            predictors = {}
            for s in settings:
                log(f"[{label}] preparing {s}")
                predictors[s] = _predictor(s, model, clip, workdir, size, device)
            for r in range(rounds):
                for s, predictor in predictors.items():
                    measurements += _measure(
                        predictor, s, label, r, rounds, clip, clip_path, workdir, warmup, codec, log
                    )
            rows += _rows(label, settings, measurements)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_after"] = list(os.getloadavg())
    return {
        "machine": machine,
        "settings": {s: DEMO_SETTINGS[s] for s in settings},
        "timing": f"{rounds} rounds; in each, per setting: the model alone, then the demo serial and pipelined "
        f"on a {frames}-frame MP4 (read + predict + draw + encode), after {warmup} warm-up frames; medians",
        "rows": rows,
        "rounds": measurements,
    }


def _write_clip(size, frames: int, workdir: str, codec: str) -> tuple[list, str]:
    """The synthetic clip's frames at ``size``, and the MP4 they were written to."""
    clip = list(SyntheticSource(frames, size))
    clip_path = os.path.join(workdir, f"clip_{size[1]}x{size[0]}.mp4")
    writer = open_video_writer(clip_path, 12.0, size, codec)
    for f in clip:
        writer.write(f)
    writer.close()
    return clip, clip_path


def _measure(predictor, setting, label, r, rounds, clip, clip_path, workdir, warmup, codec, log) -> list[dict]:
    """One round of one setting: the model alone on the clip's frames, then the demo in each mode."""
    model_only = _model_only_fps(predictor, clip)
    found = [
        {
            "size": label,
            "setting": setting,
            "mode": "model_only",
            "round": r,
            "fps": model_only,
            "loadavg": os.getloadavg()[0],
        }
    ]
    for mode in MODES:
        log(f"[{label}] round {r + 1}/{rounds}: {setting}, {mode}")
        stats = run_demo(
            VideoSource(clip_path),
            predictor,
            os.path.join(workdir, "out.mp4"),
            progress=False,
            warmup=warmup,
            codec=codec,
            pipeline=mode == "pipeline",
        )
        found.append(
            {
                "size": label,
                "setting": setting,
                "mode": mode,
                "round": r,
                "fps": stats["end_to_end_fps"],
                "model_fps_in_run": stats["model_fps"],
                "inference_fps_in_run": stats["inference_fps"],
                "frames": stats["frames"],
                "codec": stats["codec"],
                "loadavg": os.getloadavg()[0],
            }
        )
    return found


def _rows(label: str, settings, measurements: list[dict]) -> list[dict]:
    """One row per (setting, mode) of the size ``label``: medians over the rounds."""
    rows = []
    for s in settings:
        mine = [m for m in measurements if m["size"] == label and m["setting"] == s]
        model_only = statistics.median(m["fps"] for m in mine if m["mode"] == "model_only")
        for mode in MODES:
            runs = [m for m in mine if m["mode"] == mode]
            e2e = statistics.median(m["fps"] for m in runs)
            rows.append(
                {
                    "size": label,
                    "setting": s,
                    "mode": mode,
                    "e2e_fps": e2e,
                    "model_fps_in_run": statistics.median(m["model_fps_in_run"] for m in runs),
                    "model_only_fps": model_only,
                    "e2e_vs_model_only": e2e / model_only,
                    "codec": runs[0]["codec"],
                    "frames": runs[0]["frames"],
                }
            )
    return rows


def format_demo_table(result: dict) -> str:
    """The rows as a text table."""
    header = ("size", "setting", "mode", "e2e FPS", "model FPS (in run)", "model-only FPS", "e2e / model-only")
    table = [header]
    for row in result["rows"]:
        table.append(
            (
                row["size"],
                row["setting"],
                row["mode"],
                f"{row['e2e_fps']:.1f}",
                f"{row['model_fps_in_run']:.1f}",
                f"{row['model_only_fps']:.1f}",
                f"{row['e2e_vs_model_only']:.2f}x",
            )
        )
    lines = aligned_rows(table, left=3)
    m = result.get("machine", {})
    lines += [
        "",
        f"{m.get('cpu')} ({m.get('cpu_count')} cpus, {m.get('torch_threads')} torch threads), torch {m.get('torch')}, "
        f"load average {m.get('loadavg')} -> {m.get('loadavg_after')}",
        "e2e = read/decode + predict + draw + encode, after warm-up; model-only = the network alone, same frames",
    ]
    return "\n".join(lines)
