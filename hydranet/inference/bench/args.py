"""The bench's arguments (shared with the CLI): sizes, batch sizes, setting names."""

from __future__ import annotations

from ...config import parse_size
from ...errors import ConfigError
from ...limits import MAX_BATCH, pixel_limit_problem
from .settings import DEFAULT_SETTINGS, SETTINGS

__all__ = ["parse_sizes", "parse_batches", "check_batch_sizes", "parse_settings"]


def _items(text, strip: bool = True) -> list:
    """A list or tuple as it is; a comma-separated string as its non-empty items (stripped with ``strip``)."""
    if isinstance(text, (list, tuple)):
        return list(text)
    return [s.strip() if strip else s for s in str(text).split(",") if s.strip()]


def parse_sizes(text, flag: str = "--size") -> list[tuple[int, int]]:
    """``"640x480,1216x352"`` -> ``[(480, 640), (352, 1216)]``; :class:`ConfigError` naming ``flag`` if malformed."""
    sizes = [parse_size(item, minimum=32, what=flag) for item in _items(text, strip=False)]
    if not sizes:
        raise ConfigError(f"{flag}: give at least one WIDTHxHEIGHT")
    return sizes


def parse_batches(text) -> list[int]:
    """``"1,4"`` -> ``[1, 4]``; :class:`ConfigError` if malformed."""
    try:
        batches = [int(b) for b in _items(text, strip=False)]
    except ValueError:
        raise ConfigError(f"--batch {text!r}: expected positive integers such as 1,4") from None
    if not batches or any(not 1 <= b <= MAX_BATCH for b in batches):
        raise ConfigError(f"--batch {text!r}: expected integers from 1 to {MAX_BATCH} such as 1,4")
    return batches


def check_batch_sizes(batches, sizes) -> None:
    """ConfigError when a batch of a size is above the batch pixel limit (:mod:`hydranet.limits`)."""
    for b in batches:
        for h, w in sizes:
            problem = pixel_limit_problem(h, w, b)
            if problem:
                raise ConfigError(f"--batch {b} with --size {w}x{h}: expected {problem}")


def parse_settings(text) -> list[str]:
    """``"baseline,default"`` -> list; ``"all"`` -> every setting; :class:`ConfigError` for unknown names."""
    items = _items(text)
    if items == ["all"]:
        return list(DEFAULT_SETTINGS)
    unknown = [s for s in items if s not in SETTINGS]
    if unknown:
        raise ConfigError(f"--settings: unknown setting(s) {unknown}; valid: {', '.join(SETTINGS)} (or all)")
    if not items:
        raise ConfigError("--settings: give at least one setting")
    return list(dict.fromkeys(items))
