"""hydranet convert: an original Multi-Task RefineNet checkpoint -> a Hydranet checkpoint."""

from __future__ import annotations

from .common import write_json

HELP = (
    "convert an original Multi-Task RefineNet checkpoint (e.g. ExpNYUD_joint.ckpt) to Hydranet's format, "
    "or slim a Hydranet training checkpoint for inference (--half)"
)


def add_arguments(p) -> None:
    p.add_argument("src", help="the original checkpoint (a dict with the weights under 'state_dict')")
    p.add_argument("dst", help="the Hydranet checkpoint to write (then: --weights DST)")
    p.add_argument("--half", action="store_true", help="store the weights as fp16 (half the file size)")
    p.add_argument("--json", help="write the conversion report as JSON")


def _slim(args) -> int:
    from pathlib import Path

    from ..checkpoint import slim_checkpoint

    slim = slim_checkpoint(args.src, args.dst, half=args.half)
    size = Path(args.dst).stat().st_size / 1e6
    print(
        f"wrote {args.dst}: {len(slim['model'])} tensors ({slim['meta']['dtype']}), {size:.1f} MB, "
        f"training state dropped"
    )
    write_json(
        args.json, {"src": str(args.src), "dst": str(args.dst), "megabytes": size, "dtype": slim["meta"]["dtype"]}
    )
    return 0


def run(args) -> int:
    from ..checkpoint import FORMAT, safe_load, slim_checkpoint
    from ..data.io import writable_file
    from ..errors import CheckpointError
    from ..weights import convert

    writable_file(args.dst)
    try:
        source = safe_load(args.src)
    except CheckpointError:
        source = None  # maybe an original file with NumPy values: convert() reads those
    if isinstance(source, dict) and source.get("format") == FORMAT:
        return _slim(args)

    report = convert(args.src, args.dst)
    meta = report["meta"]
    print(f"layout: {report['description']}")
    print(f"mapped {report['tensors_in']} original tensors to {report['tensors_out']} model tensors")
    norm = meta["normalization"]
    print(f"input: {norm['color']} x {norm['scale']:.6g}, mean {norm['mean']}, std {norm['std']}")
    if "depth" in meta:
        print(
            f"depth: {meta['depth']['units']} (absolute value of the output), "
            f"capped at {meta['depth']['max_depth']:g} m in evaluation"
        )
    if args.half:
        slim_checkpoint(args.dst, args.dst, half=True)
    print(f"wrote {args.dst} (use it with --weights {args.dst})")
    write_json(args.json, {k: v for k, v in report.items()})
    return 0
