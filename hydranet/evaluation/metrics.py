"""Evaluation metrics that accumulate over the whole evaluation set.

Every accumulator keeps plain tensors of *sums and counts* (a confusion matrix, sums
of per-pixel error terms, an angle histogram) and turns them into metrics only in
:meth:`compute`. A metric is therefore the value over the whole set (every valid
pixel or sample weighted equally; depth by default every image, see
:class:`DepthMetrics`), never a mean of per-batch means: results do not depend on
how the set is split into batches.

This module holds the generic pieces: the base class :class:`MetricAccumulator`, the
multi-task wrapper and the table. Each kind's accumulator lives with its kind (e.g.
:class:`hydranet.kinds.depth.DepthMetrics`), all with the same interface::

    acc = build_metrics(tasks)["segm"]
    acc.update(pred, target, present)   # tensors of one batch (any device)
    acc.compute()                        # {"miou": ..., "pixel_acc": ..., ...}
    acc.reset()

``pred`` is the model output for the task, ``target`` its label tensor and
``present`` a bool tensor of shape N (False = the sample has no label for this task;
it then contributes nothing, never a fake zero). Shapes:

==============  ======================  ==========================================
kind            prediction              target (invalid values)
==============  ======================  ==========================================
segmentation    logits N x C x H x W    int64 N x H x W (``spec.ignore_index``)
                (or labels N x H x W)
depth           raw N x 1 x H x W       float N x 1 x H x W metres (0, < 0, NaN)
                (abs is taken)
normals         raw N x 3 x H x W       float N x 3 x H x W (zero vector, NaN)
                (normalised)
classification  logits N x C            int64 N (``spec.ignore_index``)
regression      N x k (normalised units float N x k (NaN = missing)
                when ``target_mean`` /
                ``target_std`` are set)
==============  ======================  ==========================================

Conventions: accuracies, ``delta*`` and ``within_*`` are fractions in [0, 1]
(multiply by 100 for percent); angles are in degrees; depth errors in metres;
regression errors in the target's own units. Every result dict also holds
``samples``, the number of samples whose label was present. A task with no valid
label in the whole set reports ``samples`` only: no metric, never a fake zero.
Non-finite predictions on valid pixels are not hidden: they make the affected
metrics NaN.

For distributed evaluation, :meth:`MetricAccumulator.reduce` (with the trainer's
reduction) or :meth:`MetricAccumulator.all_reduce` sums the state tensors over the
processes: per-image depth averages are kept as sums of per-image values and an image
count, so every state is a sum and the reduced metrics equal one process's.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Optional

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..tasks import TaskSpec, parse_task

__all__ = [
    "MetricAccumulator",
    "MultiTaskMetrics",
    "build_metrics",
    "format_table",
    "as_bool_present",
    "check_same_size",
]

# --------------------------------------------------------------------------- helpers


def as_bool_present(present: Any, n: int, device: torch.device) -> torch.Tensor:
    """``present`` as a bool tensor of shape (n,) on ``device``; None = all present."""
    if present is None:
        return torch.ones(n, dtype=torch.bool, device=device)
    present = torch.as_tensor(present, device=device).reshape(-1).to(torch.bool)
    if present.numel() != n:
        raise ValueError(f"present has {present.numel()} entries for a batch of {n}")
    return present


def check_same_size(pred: torch.Tensor, target: torch.Tensor, name: str) -> None:
    """ValueError naming task ``name`` when ``pred`` and ``target`` differ in batch or spatial size."""
    if pred.shape[-2:] != target.shape[-2:] or pred.shape[0] != target.shape[0]:
        raise ValueError(
            f"task {name!r}: prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
            "differ in batch or spatial size (upsample the prediction to the target's size, "
            "or use MultiTaskMetrics(..., resize=True))"
        )


# ----------------------------------------------------------------------- base class


class MetricAccumulator:
    """Base class: state is a few tensors (named in ``_state``) of sums and counts.

    ``DIRECTIONS`` declares every metric the accumulator reports and whether lower or higher
    is better; a per-class or per-output entry ``name/<x>`` follows its base ``name``. The
    task's ``metrics`` list (when given) selects what :meth:`report` returns; an unknown
    name there is a ConfigError naming the task.
    """

    kind: str = ""
    _state: tuple = ()
    DIRECTIONS: Mapping[str, str] = {}  # metric -> "lower" | "higher" (is better)
    COUNTS = ("samples", "pixels", "average")  # always reported, never monitored

    def __init__(self, spec: TaskSpec):
        if spec.kind != self.kind:
            raise ConfigError(
                f"task {spec.name!r}: {type(self).__name__} is for {self.kind!r} tasks, not {spec.kind!r}"
            )
        self.spec = spec
        for metric in spec.metrics or ():
            if metric.split("/", 1)[0] not in self.DIRECTIONS:
                raise ConfigError(
                    f"task {spec.name!r}: unknown metric {metric!r} in metrics; "
                    f"valid for kind {spec.kind!r}: {', '.join(self.DIRECTIONS)}"
                )
        self.reset()

    @classmethod
    def lower_is_better(cls, metric: str) -> bool:
        """Direction of ``metric`` (``mae/0`` follows ``mae``); KeyError for an unknown one."""
        base = metric.split("/", 1)[0]
        if base not in cls.DIRECTIONS:
            raise KeyError(metric)
        return cls.DIRECTIONS[base] == "lower"

    def report(self) -> dict:
        """:meth:`compute`, restricted to the task's ``metrics`` list when it has one.

        Naming a metric also keeps its per-class or per-output entries (``mae`` keeps
        ``mae/<output>``); the counts (``samples``, ``pixels``) are always kept.
        """
        out = self.compute()
        chosen = set(self.spec.metrics or ())
        if not chosen:
            return out
        return {k: v for k, v in out.items() if k in self.COUNTS or k in chosen or k.split("/", 1)[0] in chosen}

    @property
    def name(self) -> str:
        return self.spec.name

    def reset(self) -> None:
        """Clear the accumulated state (all tensors back to zero, on the CPU)."""
        self.samples = torch.zeros((), dtype=torch.int64)
        self._reset()

    def _reset(self) -> None:
        raise NotImplementedError

    def _dense_inputs(self, pred, target, present):
        """Check sizes, then :meth:`_inputs_on_device` with a float target."""
        check_same_size(pred, target, self.name)
        return self._inputs_on_device(pred, target, present, torch.float32)

    def _inputs_on_device(self, pred, target, present, dtype: torch.dtype):
        """Move the state to ``pred``'s device; ``target`` as ``dtype`` and ``present`` as bool
        (one per image) there. Sizes are the caller's to check."""
        self._to(pred.device)
        target = target.to(device=pred.device, dtype=dtype)
        return target, as_bool_present(present, target.shape[0], pred.device)

    def _to(self, device: torch.device) -> None:
        for key in ("samples",) + self._state:
            t = getattr(self, key)
            if t.device != device:
                setattr(self, key, t.to(device))

    def update(self, pred: torch.Tensor, target: torch.Tensor, present: Any = None) -> None:
        raise NotImplementedError

    def compute(self) -> dict:
        raise NotImplementedError

    def state_tensors(self) -> dict:
        """The accumulated state (sums and counts), by name."""
        return {key: getattr(self, key) for key in ("samples",) + self._state}

    def reduce(self, reduction: Any, device: Optional[torch.device] = None) -> None:
        """Replace the state by ``reduction.sum`` of it (e.g. over ranks; see ``hydranet.losses.LocalReduction``)."""
        if device is not None:
            self._to(torch.device(device))
        for key, t in self.state_tensors().items():
            setattr(self, key, reduction.sum(t))

    def all_reduce(self, device: Optional[torch.device] = None) -> None:
        """Sum the state over all processes of the default ``torch.distributed`` group.

        No-op when torch.distributed is not initialised. ``device`` defaults to the
        current CUDA device for the NCCL backend and the CPU otherwise.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        if device is None:
            nccl = dist.get_backend() == "nccl"
            device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
        self._to(torch.device(device))
        for t in self.state_tensors().values():
            dist.all_reduce(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.name!r})"


# ------------------------------------------------------------------------ multi-task


def _specs(tasks: Iterable[Any]) -> list[TaskSpec]:
    return [parse_task(t, f"tasks[{i}]") for i, t in enumerate(tasks)]


def build_metrics(tasks: Iterable[Any]) -> dict:
    """One accumulator per task: ``{task name: MetricAccumulator}`` (specs or mappings)."""
    return {spec.name: spec.task_kind.metrics(spec) for spec in _specs(tasks)}


class MultiTaskMetrics:
    """The accumulators of all tasks, fed with model outputs and batches.

    ``update(outputs, batch)``: ``outputs`` is the model's ``{task name: tensor}``;
    the targets are read from ``batch["targets"][name]`` when the batch has a
    ``"targets"`` mapping, else from ``batch[name]``; the presence flags from
    ``batch["present"][name]`` (all present when missing). A task missing from the
    outputs or the batch is skipped for that batch.

    Args:
        tasks: task specs (or their mappings).
        resize: when True, dense predictions whose spatial size differs from the
            target's are bilinearly resized to it (align_corners=False) before
            scoring, e.g. for ``model(images, upsample=False)`` outputs or
            full-resolution ground truth. When False (default) a size mismatch is an
            error.
    """

    def __init__(self, tasks: Iterable[Any], resize: bool = False):
        self.specs = {s.name: s for s in _specs(tasks)}
        self.metrics = build_metrics(self.specs.values())
        self.resize = resize

    def __getitem__(self, name: str) -> MetricAccumulator:
        return self.metrics[name]

    def __iter__(self):
        return iter(self.metrics)

    def reset(self) -> None:
        for m in self.metrics.values():
            m.reset()

    @staticmethod
    def _lookup(batch: Mapping, name: str):
        targets = batch.get("targets") if isinstance(batch.get("targets"), Mapping) else batch
        present = batch.get("present")
        present = present.get(name) if isinstance(present, Mapping) else None
        return targets.get(name), present

    def update(self, outputs: Mapping[str, torch.Tensor], batch: Mapping) -> None:
        for name, acc in self.metrics.items():
            if name not in outputs:
                continue
            target, present = self._lookup(batch, name)
            if target is None:
                continue
            pred = outputs[name]
            spec = self.specs[name]
            if self.resize and spec.dense and pred.dim() == 4 and pred.shape[-2:] != target.shape[-2:]:
                pred = F.interpolate(pred.float(), size=tuple(target.shape[-2:]), mode="bilinear", align_corners=False)
            acc.update(pred, target, present)

    def compute(self) -> dict:
        """``{task name: {metric: value}}`` over everything seen since the last reset.

        A task with a ``metrics`` list reports those (see :meth:`MetricAccumulator.report`).
        """
        return {name: acc.report() for name, acc in self.metrics.items()}

    def reduce(self, reduction: Any, device: Optional[torch.device] = None) -> None:
        """Sum every accumulator's state with ``reduction`` (over ranks under torchrun)."""
        for acc in self.metrics.values():
            acc.reduce(reduction, device)

    def lower_is_better(self, monitor: str) -> bool:
        """Direction of ``"task/metric"`` (e.g. ``count/mae/0``); ConfigError when unknown."""
        task, _, metric = monitor.partition("/")
        if task not in self.metrics:
            raise ConfigError(f"train.monitor: {monitor!r} names no task; tasks: {', '.join(self.metrics)}")
        try:
            return self.metrics[task].lower_is_better(metric)
        except KeyError:
            raise ConfigError(
                f"train.monitor: task {task!r} has no metric {metric!r}; valid: "
                f"{', '.join(type(self.metrics[task]).DIRECTIONS)}"
            ) from None

    def all_reduce(self, device: Optional[torch.device] = None) -> None:
        """Sum every accumulator's state over the distributed processes (see the base class)."""
        for acc in self.metrics.values():
            acc.all_reduce(device)


# ---------------------------------------------------------------------------- table


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4f}"
    return str(value)


def format_table(results: Mapping[str, Mapping[str, Any]], detail: bool = True) -> str:
    """A plain-text table of ``{task: {metric: value}}`` (one row per metric).

    ``detail=False`` leaves out per-class and per-output entries (keys with a ``/``).
    Floats are shown with 4 decimals; the counts (``samples``, ``pixels``) come last,
    as integers; a task without any label in the set shows ``(no labels)``.
    """
    rows = []
    counts = ("samples", "pixels", "average")
    for task, metrics in results.items():
        first = True
        items = [(k, v) for k, v in metrics.items() if k not in counts and (detail or "/" not in k)]
        if not any(k not in counts for k in metrics):
            items.append(("(no labels)", ""))
        items += [(k, metrics[k]) for k in counts if k in metrics]
        for key, value in items:
            rows.append((task if first else "", key, _fmt(value)))
            first = False
    header = ("task", "metric", "value")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}",
        "  ".join("-" * w for w in widths),
    ]
    for task, key, value in rows:
        lines.append(f"{task:<{widths[0]}}  {key:<{widths[1]}}  {value:>{widths[2]}}")
    return "\n".join(lines)
