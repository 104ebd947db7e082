"""Task specs: a task is data (name, kind, size, loss, metrics), not code.

The spec's kind (a :class:`~hydranet.tasks.kind.TaskKind` from the registry) decides
whether the head is dense (one value per pixel) or global (one value per image), how many
channels it outputs, its default loss and the metrics it reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Mapping, Optional, Sequence

from pydantic import BaseModel, BeforeValidator

from ..errors import ConfigError
from ..schema.errors import did_you_mean, unknown_key_error, validate
from ..schema.registry import registered
from ..schema.types import Field, Int, Section, Str
from .kind import TaskKind
from .registry import KINDS

MAX_CHANNELS = 100_000  # classes/outputs of one head: a bound against crafted configs


def _name_text(value: Any) -> Any:
    """Class names may be written as numbers (``[0, 1, 2]``); they are names all the same."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TaskFields(Section):
    """One entry of ``tasks``: the fields every kind shares (``options`` and ``loss_options``
    are the kind's and the loss's own schemas)."""

    name: Str = Field(description="key of the task in outputs, targets, losses and metrics (an identifier)")
    kind: Str = Field(description="the task kind: segmentation, depth, normals, classification, regression, ...")
    classes: Optional[Int] = Field(
        None, ge=1, le=MAX_CHANNELS, description="number of classes (segmentation, classification)"
    )
    outputs: Optional[Int] = Field(None, ge=1, le=MAX_CHANNELS, description="number of values (regression)")
    loss: Optional[Str] = Field(None, description="loss name (null: the kind's default); see the loss tables")
    loss_options: Any = Field(default_factory=dict, description="the loss's own options (see the loss tables)")
    metrics: list[Str] = Field(default_factory=list, description="metrics to report (empty: the kind's default)")
    ignore_index: Int = Field(
        255, ge=-(2**31), le=2**31 - 1, description="label value meaning 'no label' (class targets)"
    )
    class_names: Optional[list[Annotated[Str, BeforeValidator(_name_text)]]] = Field(
        None, description="names of the classes, one per class (legends, predictions)"
    )
    options: Any = Field(default_factory=dict, description="the kind's own options (see the task-kind tables)")


def _loss_model(kind: TaskKind, loss: Optional[str], where: str) -> type:
    name = loss or kind.losses[0]
    if name not in kind.losses:
        raise ConfigError(
            f"{where}.loss: {name!r} does not apply to kind {kind.name!r}{did_you_mean(name, kind.losses)} "
            f"(valid: {', '.join(kind.losses)})"
        )
    models = registered("loss")
    if name not in models:
        raise ConfigError(f"{where}.loss: {name!r} is not a registered loss")
    return models[name]


def _options(model: type, value: Any, where: str) -> Section:
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_unset=True)
    return validate(model, {} if value is None else value, where)


@dataclass(frozen=True)
class TaskSpec:
    """One task of the network.

    Attributes:
        name: key of the task in outputs, targets, losses and metrics.
        kind: one of ``segmentation | depth | normals | classification | regression``.
        classes: number of classes (segmentation, classification).
        outputs: number of values (regression); depth is 1 and normals 3.
        loss: loss name (see ``hydranet.losses``); default chosen by the kind.
        loss_options: the loss's options, a typed section of the loss's schema (given as a
            mapping, e.g. ``{"label_smoothing": 0.1}``, it is validated on construction).
        metrics: metric names reported in evaluation; default chosen by the kind.
        ignore_index: label value meaning "no label" for class targets.
        class_names: optional names of the classes, for legends and predictions.
        options: the kind's options, a typed section of the kind's schema (e.g. ``max_depth``
            for depth, ``target_mean``/``target_std`` for regression target normalisation).
    """

    name: str
    kind: str
    classes: Optional[int] = None
    outputs: Optional[int] = None
    loss: Optional[str] = None
    loss_options: Any = field(default_factory=dict)
    metrics: tuple = ()
    ignore_index: int = 255
    class_names: Optional[tuple] = None
    options: Any = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A spec built directly (not by parse_task) gets its options checked and typed too.
        kind = KINDS.get(self.kind)
        if kind is None:
            raise unknown_key_error(f"task {self.name!r}: kind", self.kind, list(KINDS), "task kind")
        where = f"task {self.name!r}:"
        object.__setattr__(self, "options", _options(kind.options_model, self.options, f"{where} options"))
        loss_model = _loss_model(kind, self.loss, where)
        object.__setattr__(self, "loss_options", _options(loss_model, self.loss_options, f"{where} loss_options"))
        object.__setattr__(self, "metrics", tuple(self.metrics or ()))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))

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

    def to_dict(self) -> dict:
        """Plain-data form (round-trips through :func:`parse_task`); options as written."""
        d = {k: v for k, v in asdict(self).items() if k not in ("options", "loss_options") and v not in (None, ())}
        for key in ("loss_options", "options"):
            value = getattr(self, key).to_dict()
            if value:
                d[key] = value
        for key in ("metrics", "class_names"):
            if key in d:
                d[key] = list(d[key])
        return d


def parse_task(raw: Mapping[str, Any], where: str = "tasks[?]") -> TaskSpec:
    """Validate one task mapping and return its :class:`TaskSpec`.

    Raises:
        ConfigError: naming the offending field, e.g. ``tasks[0].classes``.
    """
    if isinstance(raw, TaskSpec):
        return raw
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: got {raw!r:.60}; expected a task mapping (name, kind, ...)")
    fields = validate(TaskFields, raw, where)
    if not fields.name.isidentifier():
        raise ConfigError(f"{where}.name: got {fields.name!r}; expected an identifier-like name (letters, digits, _)")
    kind = KINDS.get(fields.kind)
    if kind is None:
        raise unknown_key_error(f"{where}.kind", fields.kind, list(KINDS), "task kind")
    for size_field in ("classes", "outputs"):
        value = getattr(fields, size_field)
        if size_field == kind.size_field and value is None:
            raise ConfigError(f"{where}.{size_field}: missing (a {kind.name} task needs it)")
        if size_field != kind.size_field and value is not None:
            size = f"{kind.size_field} sets its size" if kind.size_field else f"its size is {kind.fixed_channels}"
            raise ConfigError(f"{where}.{size_field}: a {kind.name} task has no {size_field} ({size}); remove it")
    loss_options = _options(_loss_model(kind, fields.loss, where), fields.loss_options, f"{where}.loss_options")
    options = _options(kind.options_model, fields.options, f"{where}.options")
    if kind.metric_names:
        for i, metric in enumerate(fields.metrics):
            base = metric.split("/", 1)[0]
            if base not in kind.metric_names:
                raise ConfigError(
                    f"{where}.metrics[{i}]: task {fields.name!r} has no metric {metric!r}"
                    f"{did_you_mean(base, kind.metric_names)} (valid for kind {kind.name!r}: "
                    f"{', '.join(kind.metric_names)})"
                )
    if fields.class_names is not None and len(fields.class_names) != fields.classes:
        raise ConfigError(f"{where}.class_names: {len(fields.class_names)} names for {fields.classes} classes")
    spec = TaskSpec(
        name=fields.name,
        kind=fields.kind,
        classes=fields.classes,
        outputs=fields.outputs,
        loss=fields.loss,
        loss_options=loss_options,
        metrics=tuple(fields.metrics),
        ignore_index=fields.ignore_index,
        class_names=None if fields.class_names is None else tuple(fields.class_names),
        options=options,
    )
    kind.check_spec(spec, where)
    if spec.metrics and not kind.metric_names:
        kind.metrics(spec)  # a kind without declared metric names: its accumulator checks them
    return spec


def parse_tasks(raw: Sequence[Any]) -> list[TaskSpec]:
    """Validate the ``tasks`` list of a config; names must be unique."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or not raw:
        raise ConfigError(f"tasks: got {raw!r:.60}; expected a non-empty list of task mappings")
    tasks = [parse_task(t, f"tasks[{i}]") for i, t in enumerate(raw)]
    seen = set()
    for i, t in enumerate(tasks):
        if t.name in seen:
            raise ConfigError(f"tasks[{i}].name: duplicate task name {t.name!r}")
        seen.add(t.name)
    return tasks
