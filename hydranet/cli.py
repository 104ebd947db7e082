"""The ``hydranet`` command line: thin subcommands, each calling one library function.

Flags mean the same in every command: ``--config FILE``, ``--weights FILE`` (a
checkpoint), ``--out PATH``, ``--device cpu|cuda``, ``--json FILE``. Sizes are
written ``WIDTHxHEIGHT`` (``640x480``). Heavy imports happen inside the commands, so
``hydranet --help`` is instant.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import HydranetError


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(480, 640)`` (height, width)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 640x480 (WIDTHxHEIGHT), got {text!r}") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def write_json(path, data) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2), encoding="utf-8")


def _model_from_args(args):
    """The model named by --weights (a checkpoint) or built from --config."""
    import hydranet

    if getattr(args, "weights", None):
        return hydranet.load_model(args.weights)
    return hydranet.build_model(args.config, progress=False)


def cmd_summary(args) -> int:
    from .summary import format_summary, summarize

    if not args.weights:
        # The summary describes the architecture; it needs no pretrained encoder.
        from .config import load_config

        cfg = load_config(args.config)
        cfg["model"]["encoder_weights"] = None
        args.config = cfg
    model = _model_from_args(args)
    h, w = args.size
    info = summarize(model, height=h, width=w, batch=args.batch)
    print(format_summary(info, model.config))
    write_json(args.json, info)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydranet", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("summary", help="parameters, multiply-adds and output shapes of a model")
    p.add_argument("--config", default="nyud", help="config YAML or a shipped name (default: nyud)")
    p.add_argument("--weights", help="a Hydranet checkpoint (overrides --config)")
    p.add_argument("--size", type=parse_size, default=(480, 640), help="input WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--json", help="write the summary as JSON")
    p.set_defaults(func=cmd_summary)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except HydranetError as exc:
        print(f"hydranet {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
