"""hydranet bench: inference speed, memory and output differences of each setting, in one run."""
from __future__ import annotations

from .common import add_device_arg, add_model_args, config_from_args, non_negative_int, positive_int, write_json

HELP = "time inference (model only and end to end) for each setting against the original network"


def add_arguments(p) -> None:
    add_model_args(p, default_config="nyud")
    add_device_arg(p)
    p.add_argument("--encoder", help="replace the config's encoder, e.g. mtrn_mobilenet_v2 (the original "
                                     "Multi-Task RefineNet network); with --config only")
    p.add_argument("--batch", default="1", help="batch sizes, comma-separated (default 1)")
    p.add_argument("--size", default="640x480", help="input sizes WIDTHxHEIGHT, comma-separated (default 640x480)")
    p.add_argument("--settings", default="all",
                   help="comma-separated: baseline, default, channels_last, fold_bn, compile, onnxruntime, "
                        "fp16, bf16, cuda_graphs, cuda_graphs_fp16 (default all; settings this device cannot "
                        "run are listed as skipped)")
    p.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls per setting (default 5)")
    p.add_argument("--reps", type=positive_int, default=30, help="timed calls per setting (default 30)")
    p.add_argument("--frame-size", help="WIDTHxHEIGHT of the uint8 frames timed end to end (default: --size)")
    p.add_argument("--no-e2e", action="store_true", help="time the model only")
    p.add_argument("--no-tune-allocator", action="store_true",
                   help="leave glibc's allocator as it is for every row (by default it is tuned first, for every "
                        "row alike: see hydranet.inference.fast.tune_cpu_allocator)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch and onnxruntime (default: torch's)")
    p.add_argument("--json", help="write the rows and the machine description as JSON")


def run(args) -> int:
    import sys

    import torch

    from ..inference.bench import benchmark, format_table, parse_batches, parse_settings, parse_sizes
    from ..errors import ConfigError
    from .common import model_from_args, resolve_device

    # Validate everything cheap before building the model.
    sizes = parse_sizes(args.size)
    batches = parse_batches(args.batch)
    settings = parse_settings(args.settings)
    frame_size = parse_sizes(args.frame_size)[0] if args.frame_size else None
    device = resolve_device(args.device)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("--threads must be at least 1")
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
    result = benchmark(model, device=device, batches=batches, sizes=sizes, settings=settings, warmup=args.warmup,
                       reps=args.reps, frame_size=frame_size, end_to_end=not args.no_e2e,
                       tune_allocator=not args.no_tune_allocator,
                       log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(result))
    write_json(args.json, result)
    return 0
