"""The registry of task kinds: ``kind`` name -> :class:`~hydranet.tasks.kind.TaskKind`.

The built-in kinds are plug-ins above the library (:mod:`hydranet.kinds`, one file each);
the registry imports that package once, on its first use, so that this layer never imports
upwards and a config can name a built-in kind without anyone importing it first. A kind of
one's own registers with :func:`register_kind` when its module is imported.
"""

from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Iterator

from ..errors import ConfigError
from ..schema.registry import register_options
from .kind import TaskKind

__all__ = ["KINDS", "BUILTIN_KINDS", "register_kind", "get_kind"]

BUILTIN_KINDS = "hydranet.kinds"  # the package whose import registers the built-in kinds


class KindRegistry(MutableMapping):
    """``{kind name: TaskKind}`` in registration order; reading it loads the built-in kinds first."""

    def __init__(self) -> None:
        self._kinds: dict[str, TaskKind] = {}
        self._loaded = False

    def _load(self) -> dict[str, TaskKind]:
        if not self._loaded:
            self._loaded = True  # set first: the built-in modules register while being imported
            importlib.import_module(BUILTIN_KINDS)
        return self._kinds

    def __getitem__(self, name: str) -> TaskKind:
        return self._load()[name]

    def __setitem__(self, name: str, kind: TaskKind) -> None:
        self._kinds[name] = kind

    def __delitem__(self, name: str) -> None:
        del self._kinds[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"KindRegistry({', '.join(self)})"


KINDS = KindRegistry()


def register_kind(kind: TaskKind) -> TaskKind:
    """Make ``kind`` available to task configs under ``kind.name``; checks it is complete."""
    if not isinstance(kind, TaskKind) or not kind.name:
        raise ConfigError(f"register_kind: {kind!r} is not a named TaskKind instance")
    if kind.size_field is None and not kind.fixed_channels:
        raise ConfigError(f"task kind {kind.name!r}: needs size_field or fixed_channels")
    if not kind.losses or not kind.default_metrics:
        raise ConfigError(f"task kind {kind.name!r}: needs losses and default_metrics")
    KINDS[kind.name] = kind
    register_options("task", kind.name, kind.options_model)
    return kind


def get_kind(name: str) -> TaskKind:
    """The kind registered as ``name``; ConfigError listing the valid kinds otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown task kind {name!r}; valid kinds: {', '.join(KINDS)}") from None
