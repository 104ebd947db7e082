"""hydranet affinity: which tasks help each other (TAG lookahead during one short run)."""

from __future__ import annotations

from .common import add_device_arg, positive_int, write_json

HELP = "inter-task affinity (TAG lookahead) during one short training run, and task groupings"


def add_arguments(p) -> None:
    p.add_argument("--config", help="config YAML or a shipped name (default: synthetic)")
    p.add_argument("--steps", type=positive_int, help="training steps of the run (overrides train.steps)")
    p.add_argument("--every", type=positive_int, default=5, help="measure every N steps (default 5)")
    p.add_argument("--out", default="runs/affinity", help="run folder (last.pt, logs, affinity.png)")
    add_device_arg(p)
    p.add_argument("--json", help="write the matrix and the groupings as JSON")


def run(args) -> int:
    from ..training.affinity import format_affinity, heatmap, measure_affinity, pair_benefit

    result = measure_affinity(
        args.config or "synthetic", args.out, steps=args.steps, every=args.every, device=args.device
    )
    result["pair_benefit"] = pair_benefit(result["tasks"], result["affinity"])
    result["heatmap"] = str(heatmap(result["tasks"], result["affinity"], f"{args.out}/affinity.png"))
    print(format_affinity(result))
    print(f"heat map: {result['heatmap']}")
    write_json(args.json, result)
    return 0
