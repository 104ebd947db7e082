"""hydranet summary: parameters, multiply-adds and output shapes of a model."""

from __future__ import annotations

from .common import add_model_args, batch_size, config_from_args, model_from_args, parse_size, write_json

HELP = "parameters, multiply-adds and output shapes of a model"


def add_arguments(p) -> None:
    add_model_args(p, default_config="nyud")
    p.add_argument("--size", type=parse_size, default=(480, 640), help="input WIDTHxHEIGHT (default 640x480)")
    p.add_argument("--batch", "--batch-size", dest="batch", type=batch_size, default=1, help="batch size")
    p.add_argument("--json", help="write the summary as JSON")


def run(args) -> int:
    from ..tools.summary import format_summary, summarize

    if not args.weights:
        # The summary describes the architecture; it needs no pretrained encoder.
        cfg = config_from_args(args)
        cfg["model"]["encoder_weights"] = None
        args.config = cfg
    model = model_from_args(args)
    h, w = args.size
    info = summarize(model, height=h, width=w, batch=args.batch)
    print(format_summary(info, model.config))
    write_json(args.json, info)
    return 0
