"""hydranet train: train from a config (default: the built-in synthetic scenes)."""

from __future__ import annotations

from .common import add_device_arg, positive_int, write_json

DEFAULT_OUT = "runs/train"
HELP = "train a model (default: the built-in synthetic scene set, no download needed)"


def add_arguments(p) -> None:
    p.add_argument("--config", help="config YAML or a shipped name (default: synthetic)")
    p.add_argument(
        "--out",
        default=None,
        help=f"run folder: last.pt, best.pt, logs, plots (default: {DEFAULT_OUT}, said on the first line)",
    )
    p.add_argument("--steps", type=positive_int, help="optimiser steps (default: the config's train.steps)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        help="continue from CKPT (default: OUT/last.pt); the config and --steps must be the "
        "checkpoint's unless --allow-changes",
    )
    p.add_argument(
        "--allow-changes",
        action="store_true",
        help="with --resume: continue although the config differs (the new values apply from the "
        "resumed step; config.yaml records them)",
    )
    add_device_arg(p)
    p.add_argument("--json", help="write the run summary as JSON")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.lr=1e-3 (repeatable)",
    )
    p.add_argument(
        "--encoder-weights",
        help="local encoder weights file, offline ImageNet weights (default: the config's model.encoder_weights)",
    )
    p.add_argument(
        "--weighting",
        help="uncertainty | fixed | equal | gradnorm | dwa | famo | rlw, or a gradient method: pcgrad | mgda | "
        "cagrad | nash_mtl | imtl_g | aligned_mtl | upgrad | dualproj (docs/training.md; default: the config's "
        "loss.weighting)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    legacy = p.add_argument_group(
        "flags of the classic uncertainty-weighting JSON trainer (their underscore spellings, e.g. --train_json, "
        "are accepted too)"
    )
    legacy.add_argument(
        "--train-json",
        "--train_json",
        dest="train_json",
        help="JSON records of image-level targets; infers the tasks (default: the config's data)",
    )
    legacy.add_argument(
        "--val-json", "--val_json", dest="val_json", help="JSON records for validation (default: the config's data)"
    )
    legacy.add_argument(
        "--use-uncertainty-weighting",
        "--use_uncertainty_weighting",
        dest="use_uncertainty_weighting",
        metavar="BOOL",
        help="true: uncertainty weighting; false: equal weights (default: the config's loss.weighting)",
    )
    legacy.add_argument(
        "--gradient-normalization",
        "--gradient_normalization",
        dest="gradient_normalization",
        metavar="BOOL",
        help="true: clip each head's gradient to max norm 1.0 (default: the config's loss.gradient_normalization)",
    )
    legacy.add_argument(
        "--initial-log-vars",
        "--initial_log_vars",
        dest="initial_log_vars",
        metavar="S1,S2,...",
        help="initial log sigma^2 per task, in task order, e.g. 0,0,0,0 (default: 0 for every task)",
    )


def build_run_config(args) -> dict:
    """The config of this run: file or default, JSON targets, then flag overrides."""
    from ..config import load_config
    from ..errors import ConfigError
    from ..training.json_config import json_training_config
    from ..training.settings import apply_overrides, parse_bool

    if args.train_json and not args.config:
        cfg = json_training_config(args.train_json, args.val_json)
    else:
        cfg = load_config(args.config or "synthetic")
        data = cfg.setdefault("data", {})
        for split, path in (("train", args.train_json), ("val", args.val_json)):
            if path:  # keep the config's transforms, read the JSON records
                transforms = (data.get(split) or {}).get("transforms")
                data[split] = {"type": "json", "json": path, **({"transforms": transforms} if transforms else {})}
    overrides = list(args.set)
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.encoder_weights:
        overrides.append(f"model.encoder_weights={args.encoder_weights}")
    if args.weighting:
        overrides.append(f"loss.weighting={args.weighting}")

    def flag_bool(flag: str, text: str) -> bool:
        try:
            return parse_bool(text)
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None

    if args.use_uncertainty_weighting is not None:
        uw = flag_bool("--use_uncertainty_weighting", args.use_uncertainty_weighting)
        overrides.append("loss.weighting=" + ("uncertainty" if uw else "equal"))
    if args.gradient_normalization is not None:
        gn = flag_bool("--gradient_normalization", args.gradient_normalization)
        overrides.append(f"loss.gradient_normalization={str(gn).lower()}")
    if args.initial_log_vars is not None:
        overrides.append(f"loss.initial_log_vars=[{args.initial_log_vars}]")
    return load_config(apply_overrides(cfg, overrides))


def run(args) -> int:
    import sys

    from ..errors import ConfigError
    from ..training import train

    if args.allow_changes and not args.resume:
        raise ConfigError("--allow-changes applies to --resume")
    if args.out is None:
        args.out = DEFAULT_OUT
        print(f"hydranet train: no --out given; the run is written to {DEFAULT_OUT}/", flush=True)
    summary = train(
        build_run_config(args),
        args.out,
        device=args.device,
        resume=args.resume,
        progress=not args.no_progress,
        allow_changes=args.allow_changes,
    )
    skipped = summary.get("skipped_steps") or 0
    if summary.get("rank", 0) != 0:  # under torchrun, rank 0 speaks for the run
        return 1 if summary["status"] == "too_many_skipped" else 0 if summary["status"] == "completed" else 130
    print(
        f"{summary['status']} at step {summary['step']} in {summary['seconds']:.0f} s; "
        f"checkpoints: {summary['last']}, {summary['best']}"
        + (f"; {skipped} of {summary['step']} updates skipped (non-finite loss)" if skipped else "")
    )
    write_json(args.json, summary)
    if summary["status"] == "too_many_skipped":
        print(
            f"hydranet train: error: {skipped} of {summary['step']} updates were skipped for non-finite losses "
            f"(more than train.max_skipped); the model did not train as configured",
            file=sys.stderr,
        )
        return 1
    return 0 if summary["status"] == "completed" else 130
