"""hydranet compare: Delta_m of a run's results against single-task baselines."""

from __future__ import annotations

from .common import add_baseline_args, compare_to_baseline, write_json

HELP = "Delta_m (Maninis et al. 2019) of eval results against single-task baselines"


def add_arguments(p) -> None:
    p.add_argument("run", help="the multi-task model's results (hydranet eval --json)")
    add_baseline_args(p, required=True)
    p.add_argument("--json", help="write Delta_m and the relative changes as JSON")


def run(args) -> int:
    from ..evaluation.delta_m import load_results

    report = compare_to_baseline(load_results(args.run), args.baseline, args.metrics)
    write_json(args.json, {"run": args.run, **report})
    return 0
