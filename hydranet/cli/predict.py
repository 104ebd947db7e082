"""hydranet predict: run a checkpoint on image files and folders and write every result."""

from __future__ import annotations

from .common import (
    add_device_arg,
    add_inference_weights_arg,
    add_palette_args,
    finite_float,
    parse_size,
    positive_float,
    resolve_device,
    write_json,
)

HELP = "predict images: colour segmentation, depth (colour + raw), normals, figure, point cloud, image-level JSON"


def add_arguments(p) -> None:
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files and/or folders of images")
    add_inference_weights_arg(p)
    p.add_argument(
        "--int8",
        action="store_true",
        help="run an int8 ONNX file of the checkpoint (onnxruntime, CPU): made once, calibrated on "
        "these images, and cached next to the checkpoint (or in the model cache)",
    )
    p.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    add_device_arg(p)
    p.add_argument("--half", action="store_true", help="fp16 inference (CUDA only)")
    p.add_argument("--plain", action="store_true", help="run the plain model instead of the fast path")
    p.add_argument(
        "--size",
        type=parse_size,
        metavar="WxH",
        help="resize images to this network input size; results come back at full resolution (default: each "
        "image's own size)",
    )
    p.add_argument(
        "--depth-format",
        choices=("png", "npy"),
        default="png",
        help="raw depth: png = uint16 millimetres (round(depth*1000), 0 = invalid), npy = float32 metres",
    )
    p.add_argument(
        "--max-depth",
        type=positive_float,
        help="top of the depth colour scale in metres (default: the model's max_depth, else per image)",
    )
    add_palette_args(p)
    ply = p.add_argument_group("point cloud (from the first depth task)")
    ply.add_argument(
        "--ply",
        nargs="?",
        const="binary",
        choices=("binary", "ascii"),
        help="write STEM.ply, one coloured point per valid depth pixel (default binary)",
    )
    ply.add_argument(
        "--fx",
        type=positive_float,
        help="focal length x in pixels of the input image. Defaults: NYUD models "
        "518.86*W/640; KITTI models 721.54*W/1242; otherwise a 60 deg "
        "horizontal field of view, 0.866*W",
    )
    ply.add_argument("--fy", type=positive_float, help="focal length y in pixels (defaults as --fx: NYUD 519.47*H/480)")
    ply.add_argument(
        "--cx",
        type=finite_float,
        help="principal point x (defaults: NYUD 325.58*W/640, KITTI 609.56*W/1242, else (W-1)/2)",
    )
    ply.add_argument(
        "--cy",
        type=finite_float,
        help="principal point y (defaults: NYUD 253.74*H/480, KITTI 172.85*H/375, else (H-1)/2)",
    )
    p.add_argument("--json", help="write all predictions, files and timings as JSON")


def run(args) -> int:
    from ..data.io import writable_dir
    from ..inference import Predictor, resolve_weights
    from ..tools.predict import predict_images

    device = resolve_device(args.device)
    writable_dir(args.out)
    weights = resolve_weights(args.weights)
    if args.int8:
        weights = _int8_weights(weights, args, device)
    predictor = Predictor(
        weights,
        device=device,
        half=args.half,
        fast=not args.plain,
        size=args.size,
        tune_allocator=True,
    )
    intrinsics = {"fx": args.fx, "fy": args.fy, "cx": args.cx, "cy": args.cy}
    results = predict_images(
        args.images,
        predictor,
        args.out,
        depth_format=args.depth_format,
        ply=args.ply,
        intrinsics=intrinsics,
        max_depth=args.max_depth,
        cmap=args.cmap,
        palette=args.palette,
    )
    rates = results["timing"]
    print(
        f"wrote {len(results['images'])} image(s) to {args.out}/ "
        f"(model {rates['model_ms_per_frame']:.1f} ms/image, end-to-end {rates['end_to_end_ms_per_frame']:.1f} "
        f"ms/image incl. pre/post-processing, first image included: no warm-up)"
    )
    write_json(args.json, results)
    return 0


def _int8_weights(weights, args, device):
    """The cached int8 file of ``weights`` calibrated on these images (made now if new)."""
    from ..data.io import read_image
    from ..errors import ConfigError
    from ..inference.int8_cache import DEFAULT_CALIBRATION_FRAMES, int8_file, spread
    from ..tools.predict import collect_images

    if device.type != "cpu":
        raise ConfigError("--int8 runs on the CPU (onnxruntime's int8 kernels); drop --device or --int8")
    if args.half:
        raise ConfigError("--int8 and --half: choose one")
    files = collect_images(args.images)
    key = "images " + repr(sorted((str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files))

    def frames():
        return [read_image(p) for p in spread(files, DEFAULT_CALIBRATION_FRAMES)]

    path, _ = int8_file(weights, key, frames, size=args.size)
    return path
