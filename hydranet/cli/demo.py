"""hydranet demo: the video overlay demo (default: a synthetic clip and the bundled checkpoint, offline)."""

from __future__ import annotations

from .common import (
    add_device_arg,
    add_inference_weights_arg,
    add_palette_args,
    batch_size,
    fraction,
    non_negative_int,
    parse_size,
    positive_float,
    positive_int,
    resolve_device,
    thread_count,
    write_json,
)

HELP = (
    "video overlay demo: segmentation blended over the frames, depth beside them, legend and FPS, "
    "written as MP4 (no --input: a built-in synthetic clip)"
)


def add_arguments(p) -> None:
    p.add_argument(
        "--input",
        help="a video file, a folder of frames (sorted by name) or a camera index "
        "(default: a clip rendered from the built-in synthetic scene set)",
    )
    add_inference_weights_arg(p)
    p.add_argument(
        "--int8",
        action="store_true",
        help="run an int8 ONNX file of the checkpoint (onnxruntime, CPU): made once, calibrated on "
        "this input's own frames, and cached next to the checkpoint (or in the model cache)",
    )
    p.add_argument(
        "--serial",
        action="store_true",
        help="read, predict, draw and encode one frame after another (default: the three overlap in threads)",
    )
    p.add_argument("--out", default="demo_out/demo.mp4", help="output MP4 (default: demo_out/demo.mp4)")
    p.add_argument("--frame-png", help="also save one output frame as PNG (default: frame.png beside --out)")
    add_device_arg(p)
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    p.add_argument("--plain", action="store_true", help="run the plain model instead of the fast path")
    p.add_argument("--batch", "--batch-size", dest="batch", type=batch_size, default=1, help="frames per network call")
    p.add_argument(
        "--threads",
        type=thread_count,
        help="CPU threads of the network (PyTorch, onnxruntime; default: PyTorch's, one per core). One fewer "
        "than the cores leaves a core to the pipeline's drawing and encoding: on a 2-core CPU, --threads 1 is "
        "the faster demo at 320x240 (docs/benchmarks.md)",
    )
    p.add_argument("--max-frames", type=positive_int, help="stop after this many frames (default: all)")
    p.add_argument(
        "--show",
        action="store_true",
        help="also show the frames in a window (needs a display and OpenCV with GUI support; q or Esc stops)",
    )
    p.add_argument(
        "--size",
        type=parse_size,
        metavar="WxH",
        help="network input size: frames are resized to it, results are drawn at the frame's size (default: the "
        "frame's own size)",
    )
    p.add_argument(
        "--fps",
        type=positive_float,
        help="frame rate of the written MP4 (default: the source's; folders 10, the synthetic clip 12)",
    )
    p.add_argument(
        "--max-depth",
        type=positive_float,
        help="top of the depth colour scale in metres (default: the model's max_depth, else from the first frame)",
    )
    add_palette_args(p)
    p.add_argument("--alpha", type=fraction, default=0.5, help="opacity of the segmentation over the frame")
    p.add_argument(
        "--smooth",
        type=fraction,
        default=0.0,
        metavar="ALPHA",
        help="temporal smoothing: each frame's depth and class probabilities are averaged with the "
        "previous frames' as ALPHA * previous + (1 - ALPHA) * current (0 = off, default; "
        "0.5-0.8 removes most flicker)",
    )
    p.add_argument(
        "--codec",
        default="h264",
        choices=("h264", "mp4v"),
        help="h264 (yuv420p, plays in browsers; needs PyAV: pip install 'hydranet[video]', else "
        "falls back to mp4v with a warning) or mp4v (OpenCV)",
    )
    clip = p.add_argument_group("the synthetic clip (no --input)")
    clip.add_argument("--clip-frames", type=positive_int, default=48, help="frames of the clip (default 48)")
    clip.add_argument(
        "--clip-size",
        type=parse_size,
        default=(240, 320),
        metavar="WxH",
        help="frame size of the clip (default 320x240)",
    )
    clip.add_argument("--seed", type=non_negative_int, default=0, help="scene of the clip")
    p.add_argument("--json", help="write the run's statistics (frames, FPS, paths) as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from pathlib import Path

    from ..inference import Predictor, resolve_weights
    from ..tools.video import check_display, open_source, run_demo

    if args.show:
        check_display()
    from ..data.io import writable_file

    device = resolve_device(args.device)
    writable_file(args.out)
    if args.frame_png:
        writable_file(args.frame_png)
    weights = resolve_weights(args.weights)
    clip_frames = args.clip_frames if args.max_frames is None else min(args.clip_frames, args.max_frames)

    def opened():
        return open_source(args.input, clip_frames=clip_frames, clip_size=args.clip_size, seed=args.seed)

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    source = opened()
    if args.int8:  # the source is opened again for calibration (a camera cannot be opened twice)
        source.close()
        weights = _int8_weights(weights, source.key, opened, args, device)
        source = opened()
    predictor = Predictor(
        weights,
        device=device,
        half=args.half,
        fast=not args.plain,
        size=args.size,
        tune_allocator=True,
        smooth=args.smooth,
    )
    frame_png = Path(args.frame_png) if args.frame_png else Path(args.out).parent / "frame.png"
    print(
        f"demo: {source.name} -> {args.out} (weights {weights}, {predictor.device}, "
        f"{_runs(predictor)}, batch {args.batch}, {'serial loop' if args.serial or args.show else 'pipelined'})"
    )
    stats = run_demo(
        source,
        predictor,
        args.out,
        batch=args.batch,
        max_frames=args.max_frames,
        show=args.show,
        progress=not args.no_progress,
        frame_png=frame_png,
        fps=args.fps,
        max_depth=args.max_depth,
        cmap=args.cmap,
        alpha=args.alpha,
        codec=args.codec,
        palette=args.palette,
        pipeline=not args.serial,
    )
    stats["weights"] = str(weights)
    if str(predictor.device) == "cpu":
        import torch

        stats["threads"] = torch.get_num_threads()

    def rate(v):
        return f"{v:.1f}" if v else "n/a"

    h, w = stats["output_size"]
    note = " (stopped by Ctrl-C; the video holds the frames done)" if stats["interrupted"] else ""
    print(
        f"wrote {stats['frames']} frames ({w}x{h}, {stats['codec']}) to {stats['output']} "
        f"and one frame to {stats['frame_png']}{note}"
    )
    print(
        f"FPS after warm-up on {stats['device']}: end-to-end {rate(stats['end_to_end_fps'])} "
        f"(read + predict + draw + encode) | inference {rate(stats['inference_fps'])} "
        f"(pre + model + post) | model only {rate(stats['model_fps'])}"
    )
    write_json(args.json, stats)
    return 0


def _runs(predictor) -> str:
    """How the model runs, for the start line."""
    if getattr(predictor, "onnx", False):
        return f"onnxruntime ({predictor.net.quantization or 'fp32'})"
    return "fast model" if predictor.fast else "plain model"


def _int8_weights(weights, key, opened, args, device):
    """The cached int8 file of ``weights`` for this input, made now (calibrated on its frames) if new."""
    from ..errors import ConfigError
    from ..inference.int8_cache import DEFAULT_CALIBRATION_FRAMES, int8_file
    from ..tools.video import sample_frames

    if device.type != "cpu":
        raise ConfigError("--int8 runs on the CPU (onnxruntime's int8 kernels); drop --device or --int8")
    if args.half:
        raise ConfigError("--int8 and --half: choose one")

    def frames():
        with opened() as calibration_source:
            limit = args.max_frames or 512
            return sample_frames(calibration_source, DEFAULT_CALIBRATION_FRAMES, limit=min(limit, 512))

    path, _ = int8_file(weights, key, frames, size=args.size)
    return path
