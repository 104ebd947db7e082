"""hydranet plot: plots of a training run (task losses, sigma^2, weights, validation metrics)."""

from __future__ import annotations

HELP = "plot a training run's losses, sigma^2, effective weights and validation metrics"


def add_arguments(p) -> None:
    p.add_argument("run", help="run folder written by hydranet train (holds log.jsonl)")
    p.add_argument("--out", help="folder for the PNG files (default: the run folder)")


def run(args) -> int:
    from pathlib import Path

    from ..data.io import writable_dir
    from ..errors import DataError
    from ..training.plots import plot_run

    if not (Path(args.run) / "log.jsonl").is_file():
        raise DataError(f"{args.run}: no log.jsonl (not a hydranet train run folder)")
    writable_dir(args.out or args.run)
    written = plot_run(Path(args.run), args.out and Path(args.out))
    if not written:
        raise DataError(f"{Path(args.run) / 'log.jsonl'}: nothing to plot (no readable step or validation record)")
    for path in written:
        print(path)
    return 0
