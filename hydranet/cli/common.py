"""Flags and helpers shared by the subcommands (keep imports light: --help must be instant)."""

from __future__ import annotations

import argparse
import json
import math
import re

from ..vocabulary import DEPTH_CMAPS, PALETTE_NAMES


class HelpFormatter(argparse.HelpFormatter):
    """argparse's help with every flag's default shown: ``(default: X)`` is appended unless the
    help text already states its default or there is none to state (None, False: off)."""

    def _get_help_string(self, action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text.lower() or default is None or default is False or default in (argparse.SUPPRESS, []):
            return text
        if not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return text
        return f"{text} (default: %(default)s)"


def add_palette_args(p: argparse.ArgumentParser) -> None:
    """``--palette`` and ``--cmap``: how segmentation and depth are coloured (predict, demo)."""
    p.add_argument(
        "--palette",
        metavar="NAME|FILE",
        help=f"segmentation colours: {', '.join(PALETTE_NAMES)}, or a file (.npy or text, one 'R G B' row "
        "per class) (default: the checkpoint's own colours)",
    )
    p.add_argument("--cmap", default="magma", choices=DEPTH_CMAPS, help="depth colour map")


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(480, 640)`` (height, width), for argparse."""
    from ..config import parse_size as parse
    from ..errors import ConfigError

    try:
        return parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def batch_size(text: str) -> int:
    """argparse type: images per batch, 1 to :data:`hydranet.limits.MAX_BATCH`."""
    from ..limits import MAX_BATCH

    return _number(text, int, 1, MAX_BATCH, what=f"an integer from 1 to {MAX_BATCH}")


def check_batch_pixels(args) -> None:
    """ConfigError when a command's ``--batch``/``--batch-size`` times its ``--size``/``--clip-size``
    is above the batch pixel limit (:func:`hydranet.limits.max_batch_pixels`)."""
    from ..errors import ConfigError
    from ..limits import pixel_limit_problem

    batch_flag = next((f for f in ("batch", "batch_size") if isinstance(getattr(args, f, None), int)), None)
    if batch_flag is None:
        return
    batch = getattr(args, batch_flag)
    for flag in ("size", "clip_size"):
        size = getattr(args, flag, None)
        if isinstance(size, tuple) and len(size) == 2:
            problem = pixel_limit_problem(size[0], size[1], batch)
            if problem:
                names = "--" + batch_flag.replace("_", "-"), "--" + flag.replace("_", "-")
                raise ConfigError(f"{names[0]} {batch} with {names[1]} {size[1]}x{size[0]}: expected {problem}")


def _number(text: str, cast, low=None, high=None, low_open: bool = False, what: str = ""):
    try:
        value = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    if low is not None and (value <= low if low_open else value < low) or high is not None and value > high:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a bad value is a usage error, exit 2, naming the flag)."""
    return _number(text, int, 1, what="a positive integer")


def thread_count(text: str) -> int:
    """argparse type: CPU threads, 1 to :data:`hydranet.limits.MAX_THREADS`."""
    from ..limits import MAX_THREADS

    return _number(text, int, 1, MAX_THREADS, what=f"a number of threads from 1 to {MAX_THREADS}")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, 0, what="an integer >= 0")


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinity are usage errors)."""
    return _number(text, float, what="a finite number")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    return _number(text, float, 0, low_open=True, what="a number > 0")


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    return _number(text, float, 0, 1, what="a number from 0 to 1")


def port_number(text: str) -> int:
    """argparse type: a TCP port, 1 to 65535."""
    return _number(text, int, 1, 65535, what="a port from 1 to 65535")


def device_name(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N``."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")
    return text


def write_json(path, data) -> None:
    """Write ``data`` as indented, strict JSON to ``path`` atomically (nothing when path is
    empty); non-finite numbers are written as ``null``.

    Raises:
        OutputError: naming ``path`` when it cannot be written.
    """
    if path:
        from ..data.io import write_bytes_atomic
        from ..jsonfile import json_safe

        text = json.dumps(json_safe(data), indent=2, default=str, allow_nan=False)
        write_bytes_atomic(path, text.encode("utf-8"))


def add_model_args(p: argparse.ArgumentParser, default_config: str | None = None) -> None:
    p.add_argument("--config", default=default_config, help="config YAML or a shipped name")
    p.add_argument(
        "--weights",
        help="a Hydranet checkpoint (the model is rebuilt from it) or a known model name "
        "(mtrn-nyud-joint, mtrn-kitti-joint, ...: fetched on first use)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set model.encoder=vit_b_16 (repeatable)",
    )


def config_from_args(args) -> dict:
    """The config named by --config with the --set overrides applied (validated)."""
    from ..config import load_config
    from ..errors import ConfigError
    from ..training.settings import apply_overrides

    if getattr(args, "weights", None) and getattr(args, "set", None):
        raise ConfigError("--set applies to --config; a checkpoint (--weights) fixes its model")
    cfg = load_config(args.config)
    return load_config(apply_overrides(cfg, list(getattr(args, "set", None) or [])))


def add_inference_weights_arg(p: argparse.ArgumentParser) -> None:
    """``--weights`` of the commands that run a model on images (predict, demo)."""
    p.add_argument(
        "--weights",
        help="a Hydranet checkpoint or a known model name (mtrn-nyud-joint, "
        "mtrn-kitti-joint, mtrn-nyudkitti-joint, mtrn-nyud-three: downloaded, verified "
        "and converted on first use), or an ONNX file written by `hydranet export` (fp32 or "
        "int8); default: $HYDRANET_WEIGHTS, else the bundled synthetic model",
    )


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", type=device_name, help="cpu | cuda | cuda:N (default cpu)")


def resolve_device(name: str):
    """A torch.device, with a clear error when CUDA is asked for and absent."""
    import torch

    from ..errors import ConfigError

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"--device {name}: {exc}") from exc


def model_from_args(args):
    """The model named by --weights (a checkpoint) or built from --config."""
    import hydranet

    if getattr(args, "weights", None):
        if getattr(args, "set", None):
            from ..errors import ConfigError

            raise ConfigError("--set applies to --config; a checkpoint (--weights) fixes its model")
        return hydranet.load_model(args.weights)
    config = args.config if isinstance(args.config, dict) else config_from_args(args)
    return hydranet.build_model(config, progress=False)


def add_baseline_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--baseline FILE...`` and ``--metrics``: Delta_m against single-task results."""
    p.add_argument(
        "--baseline",
        nargs="+",
        required=required,
        metavar="JSON",
        help="single-task results to compare with (eval --json files, or {task: {metric: "
        "value}}); prints Delta_m (Maninis et al. 2019) and each metric's relative change",
    )
    p.add_argument(
        "--metrics",
        help="Delta_m over these only, e.g. segm/miou,depth/abs_rel,depth/rmse "
        "(default: every summary metric of every task)",
    )


def compare_to_baseline(metrics: dict, baseline, metric_list=None) -> dict:
    """Print and return ``{"delta_m", "changes", "baseline"}`` of ``metrics`` against the baseline files."""
    from ..errors import DataError
    from ..evaluation.delta_m import delta_m, format_delta, load_results, parse_metric_list, relative_changes

    base = load_results(baseline)
    chosen = parse_metric_list(metric_list) if metric_list else None
    try:
        changes = relative_changes(metrics, base, chosen)
    except DataError as exc:  # name the baseline file(s) the comparison was made against
        raise DataError(f"{', '.join(map(str, baseline))}: {exc}") from None
    value = delta_m(metrics, base, chosen)
    # finite inputs can still overflow (a metric of 1e308 against 0.8): name the metric
    overflow = [f"{t}/{m}" for t, c in changes.items() for m, v in c.items() if not math.isfinite(v)]
    if overflow or not math.isfinite(value):
        where = f" ({', '.join(overflow)} too large)" if overflow else " (a metric is too large)"
        raise DataError(f"{', '.join(map(str, baseline))}: Delta_m is not finite{where}")
    print(format_delta(changes, value))
    return {"delta_m": value, "changes": changes, "baseline": [str(b) for b in baseline]}
