"""Tasks: the spec (what a config says about a task), the kind interface and the kind registry.

    from hydranet.tasks import parse_task
    spec = parse_task({"name": "depth", "kind": "depth"})
    spec.task_kind.valid(spec, target, present)     # everything kind-specific is asked of the kind

This package is the interface only. The built-in kinds (segmentation, depth, normals,
classification, regression) are plug-ins in :mod:`hydranet.kinds`, one file each, loaded by
the registry on its first use. A new kind is one module defining a :class:`TaskKind`
subclass and calling :func:`register_kind`.
"""

from .kind import DrawStyle, LabelSources, NoStyle, TaskKind
from .registry import KINDS, get_kind, register_kind
from .spec import TaskSpec, parse_task, parse_tasks

__all__ = [
    "KINDS",
    "DrawStyle",
    "LabelSources",
    "NoStyle",
    "TaskKind",
    "TaskSpec",
    "get_kind",
    "parse_task",
    "parse_tasks",
    "register_kind",
]
