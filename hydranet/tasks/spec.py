"""Task specs: a task is data (name, kind, size, loss, metrics), not code.

The spec's kind (a :class:`~hydranet.tasks.kind.TaskKind` from the registry) decides
whether the head is dense (one value per pixel) or global (one value per image), how many
channels it outputs, its default loss and the metrics it reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional, Sequence

from ..errors import ConfigError
from .kind import KINDS, TaskKind

_KNOWN_FIELDS = {
    "name",
    "kind",
    "classes",
    "outputs",
    "loss",
    "loss_options",
    "metrics",
    "ignore_index",
    "class_names",
    "options",
}


@dataclass(frozen=True)
class TaskSpec:
    """One task of the network.

    Attributes:
        name: key of the task in outputs, targets, losses and metrics.
        kind: one of ``segmentation | depth | normals | classification | regression``.
        classes: number of classes (segmentation, classification).
        outputs: number of values (regression); depth is 1 and normals 3.
        loss: loss name (see ``hydranet.losses``); default chosen by the kind.
        loss_options: keyword options of the loss (e.g. ``{"label_smoothing": 0.1}``).
        metrics: metric names reported in evaluation; default chosen by the kind.
        ignore_index: label value meaning "no label" for class targets.
        class_names: optional names of the classes, for legends and predictions.
        options: free-form extras (e.g. ``max_depth`` for depth, ``mean``/``std`` for
            regression target normalisation).
    """

    name: str
    kind: str
    classes: Optional[int] = None
    outputs: Optional[int] = None
    loss: Optional[str] = None
    loss_options: Mapping[str, Any] = field(default_factory=dict)
    metrics: tuple = ()
    ignore_index: int = 255
    class_names: Optional[tuple] = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task_kind(self) -> TaskKind:
        """The kind object: everything that differs between kinds is asked of it."""
        return KINDS[self.kind]

    @property
    def dense(self) -> bool:
        return self.task_kind.dense

    @property
    def channels(self) -> int:
        return self.task_kind.channels(self)

    @property
    def loss_name(self) -> str:
        return self.loss or self.task_kind.losses[0]

    @property
    def metric_names(self) -> tuple:
        return tuple(self.metrics) or self.task_kind.default_metrics

    def to_dict(self) -> dict:
        """Plain-data form (round-trips through :func:`parse_task`)."""
        d = {k: v for k, v in asdict(self).items() if v not in (None, (), {})}
        for key in ("loss_options", "options"):
            if key in d:
                d[key] = dict(d[key])
        for key in ("metrics", "class_names"):
            if key in d:
                d[key] = list(d[key])
        return d


MAX_CHANNELS = 100_000  # classes/outputs of one head: a bound against crafted configs


def parse_task(raw: Mapping[str, Any], where: str = "tasks[?]") -> TaskSpec:
    """Validate one task mapping and return its :class:`TaskSpec`.

    Raises:
        ConfigError: naming the offending field, e.g. ``tasks[0].classes``.
    """
    if isinstance(raw, TaskSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a task must be a mapping, got {type(raw).__name__}")
    unknown = set(raw) - _KNOWN_FIELDS
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(_KNOWN_FIELDS)}")
    for required in ("name", "kind"):
        if required not in raw or raw[required] in (None, ""):
            raise ConfigError(f"{where}.{required}: missing (every task needs a name and a kind)")
    name, kind = raw["name"], raw["kind"]
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"{where}.name: must be an identifier-like string, got {name!r}")
    if kind not in KINDS:
        raise ConfigError(f"{where}.kind: unknown task kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    task_kind = KINDS[kind]
    if task_kind.size_field is not None:
        size = raw.get(task_kind.size_field)
        if size is None:
            raise ConfigError(f"{where}.{task_kind.size_field}: missing (a {kind} task needs it)")
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_CHANNELS:
            raise ConfigError(
                f"{where}.{task_kind.size_field}: must be an integer from 1 to {MAX_CHANNELS}, got {size!r}"
            )
    ignore_index = raw.get("ignore_index", 255)
    if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
        raise ConfigError(f"{where}.ignore_index: must be an integer, got {ignore_index!r}")
    for key in ("loss_options", "options"):
        if raw.get(key) is not None and not isinstance(raw[key], Mapping):
            raise ConfigError(f"{where}.{key}: must be a mapping, got {raw[key]!r}")
    task_kind.check_spec(dict(raw), where)
    class_names = raw.get("class_names")
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        if len(class_names) != raw.get("classes"):
            raise ConfigError(f"{where}.class_names: {len(class_names)} names for {raw.get('classes')} classes")
    spec = TaskSpec(
        name=name,
        kind=kind,
        classes=raw.get("classes"),
        outputs=raw.get("outputs"),
        loss=raw.get("loss"),
        loss_options=dict(raw.get("loss_options") or {}),
        metrics=tuple(raw.get("metrics") or ()),
        ignore_index=ignore_index,
        class_names=class_names,
        options=dict(raw.get("options") or {}),
    )
    if spec.metrics:
        task_kind.metrics(spec)  # the kind's accumulator rejects an unknown metric name, naming the task
    return spec


def parse_tasks(raw: Sequence[Any]) -> list[TaskSpec]:
    """Validate the ``tasks`` list of a config; names must be unique."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise ConfigError("tasks: must be a non-empty list of task mappings")
    tasks = [parse_task(t, f"tasks[{i}]") for i, t in enumerate(raw)]
    seen = set()
    for i, t in enumerate(tasks):
        if t.name in seen:
            raise ConfigError(f"tasks[{i}].name: duplicate task name {t.name!r}")
        seen.add(t.name)
    return tasks
