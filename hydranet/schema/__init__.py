"""The configuration schema: every section and field with its type, range, default and description.

A config is parsed once, at the boundary (a YAML file, ``--set``, the legacy trainer flags,
a checkpoint's or an ONNX file's stored config), into typed sections; a mistake is one
:class:`~hydranet.errors.ConfigError` line naming the path, the value and what was expected.

Modules: :mod:`.types` (field types, the Section base class), :mod:`.sections` (model, train,
loss, transforms, meta), :mod:`.registry` (plug-ins' option schemas), :mod:`.errors`
(one-line messages, did-you-mean), :mod:`.safe_yaml` (the expansion budget),
:mod:`.reference` (field tables, Markdown and JSON Schema). Limits: :mod:`hydranet.limits`.
"""

from .errors import validate
from .types import Bool, Field, Float, Int, Name, OpenSection, PixelSize, Section, Str, either

__all__ = ["validate", "Field", "Section", "OpenSection", "Int", "Float", "Bool", "Str", "Name", "PixelSize", "either"]
