"""hydranet eval: metrics of a checkpoint over a data set (default: the synthetic validation set)."""

from __future__ import annotations

from .common import (
    add_baseline_args,
    add_device_arg,
    batch_size,
    compare_to_baseline,
    non_negative_int,
    resolve_device,
    write_json,
)

HELP = "evaluate a checkpoint or exported ONNX file: mIoU, depth errors, normal angles, accuracy, MAE/RMSE"


def add_arguments(p) -> None:
    p.add_argument(
        "--weights",
        required=True,
        help="a Hydranet checkpoint, or an ONNX file from `hydranet export` (fp32 or --int8; run by onnxruntime)",
    )
    p.add_argument(
        "--config",
        help="a config whose data.val section names the data (default: the "
        "checkpoint's own data.val, else the synthetic validation set)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of data.val (the checkpoint fixes the rest), e.g. --set data.val.num_samples=50",
    )
    p.add_argument(
        "--batch", "--batch-size", dest="batch_size", type=batch_size, default=8, help="images per network call"
    )
    p.add_argument("--workers", type=non_negative_int, default=0, help="data loader worker processes (0: this one)")
    p.add_argument("--plain", action="store_true", help="run the plain model instead of the fast path")
    add_device_arg(p)
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_baseline_args(p)


def run(args) -> int:
    from ..evaluation import format_table
    from ..tools.evaluate import evaluate_checkpoint

    device = resolve_device(args.device)
    results = evaluate_checkpoint(
        args.weights,
        config=args.config,
        overrides=args.set,
        device=device,
        batch_size=args.batch_size,
        workers=args.workers,
        fast=not args.plain,
        progress=not args.no_progress,
        tune_allocator=True,
    )
    print(f"{results['data']} ({results['samples']} samples)")
    print(format_table(results["metrics"]))
    if args.baseline:
        results["delta_m"] = compare_to_baseline(results["metrics"], args.baseline, args.metrics)
    write_json(args.json, results)
    return 0
