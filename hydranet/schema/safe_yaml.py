"""YAML and plain data with a size budget: a config cannot grow past what it looks like.

YAML aliases (``*name``) refer to one object many times; nested, 9 aliases of 9 aliases make
an 892-byte file stand for hundreds of millions of values ("billion laughs"), which anything
that walks the config (hashing it, copying it, writing it as JSON) then expands. Aliases
stay allowed (they are handy for repeated transforms) but the *expanded* config may hold
at most :data:`MAX_VALUES` values and :data:`MAX_DEPTH` levels, checked on the shared
objects without expanding them. The same check applies to any config mapping (a
checkpoint's pickled config can share objects the same way).
"""

from __future__ import annotations

from typing import Any, Union

import yaml

from ..errors import ConfigError

__all__ = ["MAX_VALUES", "MAX_DEPTH", "check_budget", "load_yaml"]

MAX_VALUES = 100_000  # values in a config once aliases are expanded; shipped configs hold < 200
MAX_DEPTH = 32  # nesting levels; shipped configs have 5


def check_budget(data: Any, source: str = "config") -> None:
    """ConfigError naming ``source`` when ``data`` expands to more than :data:`MAX_VALUES`
    values, nests deeper than :data:`MAX_DEPTH` levels, or contains itself."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(obj: Any, depth: int) -> int:
        if not isinstance(obj, (dict, list, tuple)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise ConfigError(f"{source}: the config contains itself (a recursive YAML alias)")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels")
        open_ids.add(key)
        children = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        total = 1
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_VALUES:
                raise ConfigError(
                    f"{source}: expands to more than {MAX_VALUES:,} values (YAML aliases of aliases, "
                    "a 'billion laughs' file?); write the config out without nested aliases"
                )
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(data, 0)


def load_yaml(text: Union[str, bytes], source: str) -> Any:
    """``yaml.safe_load(text)`` followed by :func:`check_budget` (ConfigError naming ``source``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from None
    except RecursionError:
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    check_budget(data, source)
    return data
