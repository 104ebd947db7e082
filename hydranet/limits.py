"""Size limits on untrusted input, in one place (see docs/reliability.md).

Defaults are far above any real use and far below what would exhaust a machine; each can be
raised through an environment variable for the user who needs more:

- ``MAX_PIXELS`` (``HYDRANET_MAX_PIXELS``, default 64 megapixels): the largest image a
  reader decodes; the width and height come from the file's header, before decoding.
- ``MAX_JSON_DEPTH`` (``HYDRANET_MAX_JSON_DEPTH``, default 64): nesting depth of a JSON input.
- ``MAX_PLAIN_DATA_NODES`` (``HYDRANET_MAX_PLAIN_DATA_NODES``, default 1,000,000): values in
  the plain data of a checkpoint (its config, meta, ...) counted as if written out, so a file
  whose pickle shares one list many times over cannot expand into gigabytes.
"""

from __future__ import annotations

import os

from .errors import ConfigError


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise ConfigError(f"environment variable {name}={text!r}: expected a positive integer") from None
    if value < 1:
        raise ConfigError(f"environment variable {name}={text!r}: expected a positive integer")
    return value


DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_JSON_DEPTH = 64
DEFAULT_MAX_PLAIN_DATA_NODES = 1_000_000


def max_pixels() -> int:
    """Pixels (width x height) of the largest image a reader decodes (``HYDRANET_MAX_PIXELS``)."""
    return _env_int("HYDRANET_MAX_PIXELS", DEFAULT_MAX_PIXELS)


def max_json_depth() -> int:
    """Deepest nesting of lists and objects accepted in a JSON input (``HYDRANET_MAX_JSON_DEPTH``)."""
    return _env_int("HYDRANET_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)


def max_plain_data_nodes() -> int:
    """Values allowed in a checkpoint's plain data, counted as written out (``HYDRANET_MAX_PLAIN_DATA_NODES``)."""
    return _env_int("HYDRANET_MAX_PLAIN_DATA_NODES", DEFAULT_MAX_PLAIN_DATA_NODES)
