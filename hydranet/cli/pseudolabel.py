"""hydranet pseudolabel: fill the missing dense labels of a list file with a teacher's predictions."""

from __future__ import annotations

from ..vocabulary import NYUD_DEPTH_SCALE
from .common import add_device_arg, fraction, positive_float, resolve_device, write_json

HELP = "fill missing segmentation/depth/normals labels of a list file with a teacher's predictions"


def add_arguments(p) -> None:
    p.add_argument(
        "--weights",
        "--teacher",
        dest="weights",
        required=True,
        help="the teacher: a Hydranet checkpoint, a known model name or an ONNX file written by `hydranet "
        "export` (--teacher is the older name)",
    )
    p.add_argument("--list", required=True, help="the list file whose missing labels to fill")
    p.add_argument("--root", help="folder the list's relative paths start from (default: the list's folder)")
    p.add_argument("--out", required=True, help="folder for the pseudo-labels and the completed list")
    p.add_argument(
        "--depth-scale",
        type=positive_float,
        default=NYUD_DEPTH_SCALE,
        help="depth PNG units per metre (NYUD 5000, KITTI 256)",
    )
    p.add_argument(
        "--confidence",
        type=fraction,
        help="segmentation: leave pixels below this softmax probability unlabelled, 0 to 1 (default: none, "
        "every pixel gets the teacher's class)",
    )
    add_device_arg(p)
    p.add_argument("--json", help="write the report as JSON")


def run(args) -> int:
    from ..inference import resolve_weights
    from ..tools.pseudolabel import pseudolabel

    report = pseudolabel(
        resolve_weights(args.weights),
        args.list,
        args.out,
        root=args.root,
        depth_scale=args.depth_scale,
        confidence=args.confidence,
        device=resolve_device(args.device),
    )
    print(f"{report['samples']} samples: filled {report['filled']}, real labels kept {report['kept']}")
    print(f"completed list: {report['list']}")
    write_json(args.json, report)
    return 0
