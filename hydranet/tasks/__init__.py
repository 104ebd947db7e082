"""Tasks: the spec (what a config says about a task) and the kinds (what a kind of task means).

    from hydranet.tasks import parse_task
    spec = parse_task({"name": "depth", "kind": "depth"})
    spec.task_kind.valid(spec, target, present)     # everything kind-specific is asked of the kind

Built-in kinds, one module each: segmentation, depth, normals, classification, regression.
A new kind is one module defining a :class:`TaskKind` subclass and calling :func:`register_kind`.
"""

from . import classification, depth, normals, regression, segmentation  # noqa: F401  (register the kinds)
from .kind import KINDS, DrawStyle, LabelSources, TaskKind, get_kind, register_kind
from .spec import TaskSpec, parse_task, parse_tasks

__all__ = [
    "KINDS",
    "DrawStyle",
    "LabelSources",
    "TaskKind",
    "TaskSpec",
    "get_kind",
    "parse_task",
    "parse_tasks",
    "register_kind",
]
