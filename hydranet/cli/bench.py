"""hydranet bench: inference speed, memory and output differences of each setting, in one run."""

from __future__ import annotations

from .common import (
    add_device_arg,
    add_model_args,
    config_from_args,
    non_negative_int,
    positive_int,
    thread_count,
    write_json,
)

HELP = (
    "time inference (model only and end to end) for each setting against the original network; "
    "--train: training steps and the data loader in images/s against a plain PyTorch loop"
)


def add_arguments(p) -> None:
    add_model_args(p, default_config="nyud")
    add_device_arg(p)
    p.add_argument(
        "--encoder",
        help="replace the config's encoder, e.g. mtrn_mobilenet_v2 (the original "
        "Multi-Task RefineNet network); with --config only",
    )
    p.add_argument(
        "--train",
        action="store_true",
        help="time training instead: the trainer's step (plain, trainer, channels_last, compile, amp_bf16, "
        "amp_fp16) against a plain PyTorch loop, and the data loader's images/s",
    )
    p.add_argument(
        "--batch",
        "--batch-size",
        dest="batch",
        default=None,
        help="batch sizes, comma-separated (default 1; --train: one size, default train.batch_size)",
    )
    p.add_argument(
        "--size",
        default=None,
        help="input sizes WIDTHxHEIGHT, comma-separated (default 640x480; "
        "--train: one crop size, default data.train.transforms.size)",
    )
    p.add_argument(
        "--settings",
        default="all",
        help="comma-separated: baseline, default, channels_last, fold_bn, compile, onnxruntime, "
        "onnxruntime_static, onnxruntime_int8, fp16, bf16, cuda_graphs, cuda_graphs_fp16 (default all; "
        "settings this device cannot run are listed as skipped); --train: plain, trainer, "
        "channels_last, compile, amp_bf16, amp_fp16",
    )
    p.add_argument(
        "--warmup", type=non_negative_int, default=None, help="untimed calls per setting (default 5; --train 2)"
    )
    p.add_argument("--reps", type=positive_int, default=None, help="timed calls per setting (default 30; --train 8)")
    p.add_argument(
        "--calibration",
        metavar="CONFIG_OR_LIST",
        help="onnxruntime_int8: a config (its data.val) or an image list file to calibrate on "
        "(default: the model's own data)",
    )
    p.add_argument(
        "--calibration-frames",
        type=positive_int,
        default=32,
        metavar="N",
        help="onnxruntime_int8: calibration frames (default 32)",
    )
    p.add_argument(
        "--loader-workers",
        default="0",
        help="--train: worker counts to time the data loader with, comma-separated (default 0: the "
        "main process, i.e. what one worker gives)",
    )
    p.add_argument("--loader-batches", type=positive_int, default=8, help="--train: batches timed per worker count")
    p.add_argument(
        "--synthetic-data",
        action="store_true",
        help="--train: train on synthetic scenes with the config's tasks and crop size (default: only "
        "when the config's data cannot be read here)",
    )
    p.add_argument(
        "--e2e",
        action="store_true",
        help="time the video demo's whole path instead (read + predict + draw + encode an MP4 of the "
        "synthetic clip) for the settings default, onnxruntime, onnxruntime_int8, serial loop against "
        "the pipeline, alternating in one run; --size default 320x240,640x480, --reps = rounds (default 2)",
    )
    p.add_argument("--e2e-frames", type=positive_int, default=48, help="--e2e: frames of the clip (default 48)")
    p.add_argument("--frame-size", help="WIDTHxHEIGHT of the uint8 frames timed end to end (default: --size)")
    p.add_argument("--no-e2e", action="store_true", help="time the model only")
    p.add_argument(
        "--no-tune-allocator",
        action="store_true",
        help="leave glibc's allocator as it is for every row (by default it is tuned first, for every "
        "row alike: see hydranet.inference.fast.tune_cpu_allocator)",
    )
    p.add_argument("--threads", type=thread_count, help="CPU threads for PyTorch and onnxruntime (default: torch's)")
    p.add_argument("--json", help="write the rows and the machine description as JSON")


def run(args) -> int:
    import sys

    import torch

    from ..errors import ConfigError
    from ..inference.bench import benchmark, check_batch_sizes, format_table, parse_batches, parse_settings, parse_sizes
    from .common import model_from_args, resolve_device

    if args.train:
        return _run_train(args)
    if args.e2e:
        return _run_e2e(args)
    args.warmup = 5 if args.warmup is None else args.warmup
    args.reps = 30 if args.reps is None else args.reps
    # Validate everything cheap before building the model.
    sizes = parse_sizes(args.size or "640x480")
    batches = parse_batches(args.batch or "1")
    check_batch_sizes(batches, sizes)
    settings = parse_settings(args.settings)
    frame_size = parse_sizes(args.frame_size, "--frame-size")[0] if args.frame_size else None
    device = resolve_device(args.device)
    if args.threads is not None:  # 1..MAX_THREADS by its argparse type
        torch.set_num_threads(args.threads)
    if not args.weights:
        cfg = config_from_args(args)
        cfg["model"]["encoder_weights"] = None  # speed does not depend on pretrained weights
        if args.encoder:
            cfg["model"]["encoder"] = args.encoder
            cfg["model"]["encoder_options"] = {}
        args.config = cfg
    elif args.encoder:
        raise ConfigError("--encoder applies to --config; a checkpoint (--weights) fixes its encoder")
    model = model_from_args(args)
    result = benchmark(
        model,
        device=device,
        batches=batches,
        sizes=sizes,
        settings=settings,
        warmup=args.warmup,
        reps=args.reps,
        frame_size=frame_size,
        end_to_end=not args.no_e2e,
        tune_allocator=not args.no_tune_allocator,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        calibration=(args.calibration, args.calibration_frames),
    )
    print(format_table(result))
    write_json(args.json, result)
    return 0


def _run_train(args) -> int:
    import sys

    import torch

    from ..errors import ConfigError
    from ..inference.bench import check_batch_sizes, parse_batches, parse_sizes
    from ..limits import MAX_WORKERS
    from ..training.throughput import format_train_table, train_benchmark
    from .common import resolve_device

    if args.weights:
        raise ConfigError("--train times training from --config (weights do not change its speed); drop --weights")
    sizes = parse_sizes(args.size) if args.size else [None]
    batches = parse_batches(args.batch) if args.batch else [None]
    if len(sizes) > 1 or len(batches) > 1:
        raise ConfigError("--train: give one --size and one --batch")
    if sizes[0] is not None and batches[0] is not None:
        check_batch_sizes(batches, sizes)
    try:
        workers = [int(w) for w in str(args.loader_workers).split(",") if w.strip()]
    except ValueError:
        raise ConfigError(f"--loader-workers {args.loader_workers!r}: expected integers such as 0,2") from None
    if any(w < 0 or w > MAX_WORKERS for w in workers):
        raise ConfigError(f"--loader-workers: worker counts must be from 0 to {MAX_WORKERS}, got {args.loader_workers}")
    device = resolve_device(args.device)
    if args.threads is not None:  # 1..MAX_THREADS by its argparse type
        torch.set_num_threads(args.threads)
    result = train_benchmark(
        args.config,
        device=device,
        size=sizes[0],
        batch_size=batches[0],
        settings=args.settings,
        warmup=2 if args.warmup is None else args.warmup,
        reps=8 if args.reps is None else args.reps,
        loader_workers=workers,
        loader_batches=args.loader_batches,
        synthetic=True if args.synthetic_data else None,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(format_train_table(result))
    write_json(args.json, result)
    return 0


def _run_e2e(args) -> int:
    import sys

    import torch

    from ..inference.bench import parse_sizes
    from ..tools.demo_bench import DEMO_SETTINGS, demo_benchmark, format_demo_table
    from .common import model_from_args, resolve_device

    sizes = parse_sizes(args.size or "320x240,640x480")
    settings = list(DEMO_SETTINGS) if args.settings == "all" else [s.strip() for s in args.settings.split(",")]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if not args.weights:
        cfg = config_from_args(args)
        cfg["model"]["encoder_weights"] = None
        args.config = cfg
    model = model_from_args(args)
    result = demo_benchmark(
        model,
        sizes=sizes,
        settings=settings,
        frames=args.e2e_frames,
        rounds=2 if args.reps is None else args.reps,
        warmup=2 if args.warmup is None else args.warmup,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
        device=resolve_device(args.device),
    )
    print(format_demo_table(result))
    write_json(args.json, result)
    return 0
