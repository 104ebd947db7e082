"""hydranet export: write a model as ONNX or TorchScript and check the file against PyTorch."""

from __future__ import annotations

from .common import add_model_args, config_from_args, parse_size, positive_int, write_json

HELP = "export a model to ONNX (dynamic batch and size) or TorchScript, checked against PyTorch"


def add_arguments(p) -> None:
    add_model_args(p)
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx", help="file format (default onnx)")
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument("--opset", type=positive_int, default=18, help="ONNX opset, 17 or later (default 18)")
    p.add_argument(
        "--size", default="640x480", help="WIDTHxHEIGHT of the example input and of the first check (default 640x480)"
    )
    p.add_argument(
        "--static",
        action="store_true",
        help="ONNX fixed to --size and batch 1 (onnxruntime runs it about 10%% faster; one file per size)",
    )
    p.add_argument(
        "--plain-layers",
        action="store_true",
        help="ONNX with every layer as the model has it (default: equivalent forms onnxruntime runs faster)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="ONNX quantised to int8 (static QDQ, per-channel weights), calibrated on --calibration frames",
    )
    p.add_argument(
        "--calibration",
        metavar="CONFIG_OR_LIST",
        help="with --int8: a config (its data.val) or an image list file to calibrate on (default: the "
        "data of --config or of the checkpoint)",
    )
    p.add_argument(
        "--calibration-frames",
        type=int,
        default=32,
        metavar="N",
        help="with --int8: frames to calibrate on (default 32)",
    )
    p.add_argument("--no-check", action="store_true", help="skip the check against PyTorch")
    p.add_argument("--json", help="write the export report (with the check) as JSON")


def run(args) -> int:
    import argparse

    from ..data.io import writable_file
    from ..errors import ConfigError
    from ..inference.export import check_opset, export_onnx, export_torchscript, format_check
    from .common import model_from_args

    if not args.weights and not args.config:
        raise ConfigError("give --weights CKPT (a Hydranet checkpoint) or --config FILE")
    try:
        size = parse_size(args.size)
    except argparse.ArgumentTypeError as exc:
        raise ConfigError(f"--size: {exc}") from None
    if (args.calibration or args.calibration_frames != 32) and not args.int8:
        raise ConfigError("--calibration and --calibration-frames apply to --int8")
    if args.int8 and args.format != "onnx":
        raise ConfigError("--int8 applies to --format onnx")
    if args.format == "onnx":
        check_opset(args.opset)
    elif args.static or args.plain_layers:
        raise ConfigError("--static and --plain-layers apply to --format onnx")
    writable_file(args.out)  # before the minute an export can take
    if not args.weights:
        cfg = config_from_args(args)
        cfg["model"]["encoder_weights"] = None  # an architecture export; weights come with --weights
        args.config = cfg
    model = model_from_args(args)
    if args.int8:
        report = _export_int8(model, args, size)
    elif args.format == "onnx":
        report = export_onnx(
            model,
            args.out,
            opset=args.opset,
            size=size,
            check=not args.no_check,
            static=args.static,
            runtime_forms=not args.plain_layers,
        )
        shape = ", ".join(str(d) for d in report["input_shape"])
        print(
            f"wrote {args.out}: ONNX opset {report['opset']}, input 'image' ({shape}), "
            f"outputs {', '.join(report['outputs'])}"
        )
    else:
        if args.static or args.plain_layers:
            raise ConfigError("--static and --plain-layers apply to --format onnx")
        report = export_torchscript(model, args.out, size=size, check=not args.no_check)
        print(f"wrote {args.out}: TorchScript (torch.jit.load), outputs {{{', '.join(report['outputs'])}}}")
    if args.int8:
        shape = ", ".join(str(d) for d in report["input_shape"])
        print(
            f"wrote {args.out}: ONNX int8 (static QDQ, per-channel weights, calibrated on "
            f"{report['calibration_frames']} frames), input 'image' ({shape}), "
            f"outputs {', '.join(report['outputs'])}"
        )
    if "check" in report:
        print("check against PyTorch (onnxruntime)" if args.format == "onnx" else "check against PyTorch")
        print(format_check(report["check"]))
        if args.int8:
            print(
                "(int8 on random inputs differs by design; judge the file by `hydranet eval --weights "
                f"{args.out}` against the fp32 model)"
            )
    write_json(args.json, report)
    return 0


def _export_int8(model, args, size) -> dict:
    """fp32 export to a temporary file, then static quantisation into ``args.out``."""
    import tempfile
    from pathlib import Path

    from ..inference.export import check_onnx, export_onnx
    from ..inference.quantize import calibration_batches, quantize_onnx

    # Calibration data first: a missing source is an error before any export work.
    batches = calibration_batches(model, args.calibration, args.calibration_frames)
    with tempfile.TemporaryDirectory(prefix="hydranet-int8-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        report = export_onnx(
            model,
            fp32,
            opset=args.opset,
            size=size,
            check=False,
            static=args.static,
            runtime_forms=not args.plain_layers,
        )
        report.update(quantize_onnx(fp32, args.out, batches))
    if not args.no_check:
        h, w = size
        sizes = [(h, w)] if args.static else [(h, w), (max(32, h // 2 + 1), max(32, w // 2 + 3))]
        report["check"] = check_onnx(args.out, model, sizes, vary_batch=not args.static)
    return report
