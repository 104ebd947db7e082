"""Strict JSON input: finite numbers only, a nesting-depth limit, errors naming the file.

Python's :mod:`json` accepts ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON) and recurses
once per nesting level, so a deeply nested file ends in RecursionError. Every JSON file a
user hands Hydranet (result files for ``compare`` and ``eval --baseline``, JSON data records,
vocabularies) is read by :func:`read_json`, which refuses both with one line naming the file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import DataError
from .limits import max_json_depth

__all__ = ["read_json", "parse_json", "nesting_depth", "finite_number", "json_safe"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count)."""
    code = np.frombuffer(_STRING.sub("", text).encode("utf-8", "replace"), dtype=np.uint8)
    if code.size == 0:
        return 0
    step = np.zeros(code.size, dtype=np.int64)
    step[(code == ord("[")) | (code == ord("{"))] = 1
    step[(code == ord("]")) | (code == ord("}"))] = -1
    return int(np.cumsum(step).max(initial=0))


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number (only finite numbers are accepted)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ValueError(f"{text} is not a finite number")
    return value


def parse_json(text: str, source: str) -> Any:
    """Parse JSON ``text``; DataError naming ``source`` for NaN/Infinity, overflowing numbers,
    nesting deeper than :func:`hydranet.limits.max_json_depth` or malformed text."""
    depth, limit = nesting_depth(text), max_json_depth()
    if depth > limit:
        raise DataError(
            f"{source}: JSON nested {depth} levels deep, more than the limit of {limit} (HYDRANET_MAX_JSON_DEPTH)"
        )
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"{source}: cannot read JSON: {exc}") from exc


def read_json(path: Union[str, Path], what: str = "JSON file") -> Any:
    """Parse the JSON file at ``path`` strictly (see :func:`parse_json`).

    Raises:
        DataError: naming the file: missing, unreadable, not UTF-8, or invalid as above.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark is not an error
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from exc
    return parse_json(text, str(path))


def finite_number(value: Any) -> bool:
    """True for an int or a finite float; False for booleans, strings, None, NaN and infinities."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinity (Python or NumPy float) replaced by ``None``.

    ``json.dumps`` writes them as ``NaN``/``Infinity``, which no strict reader (this module
    included) accepts: a diverged metric in a ``--json`` report becomes ``null`` instead.
    """
    if isinstance(data, dict):
        return {k: json_safe(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(v) for v in data]
    if isinstance(data, (float, np.floating)):
        return float(data) if math.isfinite(data) else None
    return data
