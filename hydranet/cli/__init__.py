"""The ``hydranet`` command line: thin subcommands, each calling one library function.

Each subcommand lives in its own module of this package with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside
``run`` so ``hydranet --help`` is instant. Flags mean the same in every command:
``--config FILE``, ``--weights FILE`` (a checkpoint), ``--out PATH``,
``--device cpu|cuda``, ``--json FILE``. Sizes are written ``WIDTHxHEIGHT`` (``640x480``).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import HydranetError

# Subcommand name -> module in this package.
COMMANDS = {
    "summary": "summary",
    "bench": "bench",
    "export": "export",
    "convert": "convert",
    "train": "train",
    "eval": "eval",
    "compare": "compare",
    "plot": "plot",
    "predict": "predict",
    "demo": "demo",
    "serve": "serve",
    "pseudolabel": "pseudolabel",
    "affinity": "affinity",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hydranet", description="Hydranet: real-time multi-task dense prediction")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __name__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if getattr(args, "json", None):  # every --json is a report file: refuse a bad path before the work
            from ..data.io import writable_file

            writable_file(args.json)
        from .common import check_batch_pixels

        check_batch_pixels(args)
        return int(args.func(args) or 0)
    except HydranetError as exc:
        print(f"hydranet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output or input path the checks before could not foresee
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"hydranet {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hydranet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
