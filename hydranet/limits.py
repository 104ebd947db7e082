"""Size limits on every input: one place, one knob.

The defaults are far above any real use and far below what would exhaust a machine; a user
who needs more raises them with one environment variable::

    HYDRANET_MAX_PIXELS=200000000 hydranet predict huge.png ...

* :func:`max_pixels`: pixels of one image (``--size``, ``--clip-size``, ``transforms.size``,
  a data set's ``size``, a decoded image's header). Default 64 megapixels
  (:data:`DEFAULT_MAX_PIXELS`), overridden by ``HYDRANET_MAX_PIXELS``.
* :func:`max_batch_pixels`: images per batch x pixels per image (``train.batch_size`` x
  ``transforms.size``, ``--batch`` x ``--size``): :data:`BATCH_PIXELS_FACTOR` x
  :func:`max_pixels` (256 megapixels by default).
* :data:`MAX_VIT_GRID`: the side of a ViT's position-embedding grid
  (``encoder_options.image_size / patch_size``).
* :data:`MAX_SCALE`: the largest random rescale factor of ``transforms.scale``.
* :data:`MAX_THREADS`: ``--threads`` (256); :data:`MAX_WORKERS`: data-loader worker processes
  (``train.workers``, ``--loader-workers``; 256).
* :func:`max_json_depth`: nesting depth of a JSON input (``HYDRANET_MAX_JSON_DEPTH``, 64).
* :func:`max_plain_data_nodes`: values in a checkpoint's plain data (config, meta, ...)
  counted as if written out, so a pickle sharing one list many times over cannot expand into
  gigabytes (``HYDRANET_MAX_PLAIN_DATA_NODES``, 1,000,000).
"""

from __future__ import annotations

import os

from .errors import ConfigError

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "BATCH_PIXELS_FACTOR",
    "MAX_BATCH",
    "MAX_SCALE",
    "MAX_VIT_GRID",
    "MAX_THREADS",
    "MAX_WORKERS",
    "MAX_PIXELS_ENV",
    "max_pixels",
    "max_batch_pixels",
    "pixel_limit_problem",
    "max_json_depth",
    "max_plain_data_nodes",
]

MAX_PIXELS_ENV = "HYDRANET_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 64_000_000  # 64 megapixels: an 8000 x 8000 image
BATCH_PIXELS_FACTOR = 4  # a batch may hold 4 images of the largest size
MAX_BATCH = 65_536  # images per batch, whatever their size
MAX_SCALE = 8.0  # transforms.scale upper factor
MAX_VIT_GRID = 256  # ViT position grid side: image_size 4096 at patch 16
MAX_THREADS = 256  # --threads: CPU threads of one process (100,000 exhausted memory creating them)
MAX_WORKERS = 256  # data-loader worker processes (train.workers, --loader-workers)


def max_pixels() -> int:
    """Pixels allowed in one image: ``$HYDRANET_MAX_PIXELS`` if set (a positive integer), else 64 M."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        number = float(text)  # "2e8" as well as "200000000"
        value = int(number) if number.is_integer() else 0
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive integer number of pixels")
    return value


def max_batch_pixels() -> int:
    """Images per batch x pixels per image allowed (``BATCH_PIXELS_FACTOR x max_pixels()``)."""
    return BATCH_PIXELS_FACTOR * max_pixels()


def pixel_limit_problem(height: int, width: int, batch: int = 1) -> str | None:
    """None when a ``batch`` of ``height x width`` images is within the limits, else what is
    expected (a phrase naming the limit and how to raise it), for the caller's one-line error."""
    pixels = int(height) * int(width)
    limit = max_pixels()
    if pixels > limit:
        return f"at most {limit:,} pixels per image, got {pixels:,} (raise the limit with {MAX_PIXELS_ENV})"
    if batch > MAX_BATCH:
        return f"at most {MAX_BATCH:,} images per batch, got {batch:,}"
    if batch * pixels > max_batch_pixels():
        return (
            f"at most {max_batch_pixels():,} pixels per batch ({BATCH_PIXELS_FACTOR} x {MAX_PIXELS_ENV}), "
            f"got {batch} x {width}x{height} = {batch * pixels:,}"
        )
    return None


DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_PLAIN_DATA_NODES = 1_000_000


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={text!r}: expected a positive integer")
    return value


def max_json_depth() -> int:
    """Deepest nesting of lists and objects accepted in a JSON input (``HYDRANET_MAX_JSON_DEPTH``)."""
    return _env_int("HYDRANET_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)


def max_plain_data_nodes() -> int:
    """Values allowed in a checkpoint's plain data, counted as written out (``HYDRANET_MAX_PLAIN_DATA_NODES``)."""
    return _env_int("HYDRANET_MAX_PLAIN_DATA_NODES", DEFAULT_MAX_PLAIN_DATA_NODES)
