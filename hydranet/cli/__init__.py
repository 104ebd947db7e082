"""The ``hydranet`` command line: thin subcommands, each calling one library function.

Each subcommand lives in its own module of this package with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; heavy imports happen inside
``run`` so ``hydranet --help`` is instant. Flags mean the same in every command:
``--config FILE``, ``--weights FILE`` (a checkpoint), ``--out PATH``,
``--device cpu|cuda``, ``--json FILE``. Sizes are written ``WIDTHxHEIGHT`` (``640x480``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
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
    """The ``hydranet`` parser; ``parser.commands`` maps each command name to its own parser."""
    from .. import __version__
    from .common import HelpFormatter

    parser = argparse.ArgumentParser(
        prog="hydranet", description="Hydranet: real-time multi-task dense prediction", formatter_class=HelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"hydranet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parser.commands = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __name__)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
        parser.commands[name] = p
    return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse ``argv``; an unknown flag after a command is that command's usage error (``hydranet serve: error``)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        owner = parser.commands.get(getattr(args, "command", None) or "", parser)
        owner.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# Arguments naming files a command reads. (``train --config`` is left out: a run folder's own
# config.yaml may be given back to the run that rewrites it; ``--resume`` is rewritten by design.)
INPUT_ARGUMENTS = (
    "weights", "config", "src", "teacher", "list", "input", "images", "calibration", "baseline", "run",
    "train_json", "val_json", "palette",
)  # fmt: skip


FOLDER_INPUTS = ("images", "input")  # arguments that may name a folder whose files are read


def input_paths(args) -> list:
    """The file paths among ``args``' input arguments (see ``INPUT_ARGUMENTS``)."""
    paths = []
    for name in INPUT_ARGUMENTS:
        if name == "config" and args.command == "train":
            continue
        value = getattr(args, name, None)
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and item:
                paths.append(item)
                if name in FOLDER_INPUTS and os.path.isdir(item):  # a folder of frames or images
                    paths += [entry.path for entry in os.scandir(item) if entry.is_file()]
    return paths


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, so every command stops through its
    cleanup (an atomic write removes its temporary file) instead of dying mid-write."""
    try:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    except ValueError:  # not the main thread: leave signals to the caller
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        from ..data.io import protected_inputs

        with _sigterm_as_interrupt(), protected_inputs(input_paths(args)):  # no output may replace an input
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
