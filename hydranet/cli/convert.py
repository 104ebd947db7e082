"""hydranet convert: an original Multi-Task RefineNet checkpoint -> a Hydranet checkpoint."""
from __future__ import annotations

from .common import write_json

HELP = "convert an original Multi-Task RefineNet checkpoint (e.g. ExpNYUD_joint.ckpt) to Hydranet's format"


def add_arguments(p) -> None:
    p.add_argument("src", help="the original checkpoint (a dict with the weights under 'state_dict')")
    p.add_argument("dst", help="the Hydranet checkpoint to write (then: --weights DST)")
    p.add_argument("--json", help="write the conversion report as JSON")


def run(args) -> int:
    from ..weights import convert

    report = convert(args.src, args.dst)
    meta = report["meta"]
    print(f"layout: {report['description']}")
    print(f"mapped {report['tensors_in']} original tensors to {report['tensors_out']} model tensors")
    norm = meta["normalization"]
    print(f"input: {norm['color']} x {norm['scale']:.6g}, mean {norm['mean']}, std {norm['std']}")
    if "depth" in meta:
        print(f"depth: {meta['depth']['units']} (absolute value of the output), "
              f"capped at {meta['depth']['max_depth']:g} m in evaluation")
    print(f"wrote {args.dst} (use it with --weights {args.dst})")
    write_json(args.json, {k: v for k, v in report.items()})
    return 0
