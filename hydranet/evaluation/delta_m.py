"""Delta_m: a multi-task model's mean relative gain over single-task baselines.

Maninis, Radosavovic and Kokkinos, "Attentive single-tasking of multiple tasks", CVPR 2019
(the measure LibMTL and Multi-Task-Learning-PyTorch report)::

    Delta_m = 1/T sum_t 1/N_t sum_j (-1)^{l_j} (M_m,j - M_b,j) / M_b,j * 100

over the T tasks and the N_t metrics of task t, with ``l_j = 1`` for a metric where lower
is better, so a positive Delta_m means better than the baselines on average.
Results are ``{task: {metric: value}}`` as in ``hydranet eval --json``'s ``metrics``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ..errors import ConfigError, DataError
from ..jsonfile import finite_number, read_json
from ..tasks import KINDS
from .metrics import MetricAccumulator

Results = Mapping[str, Mapping[str, float]]

# Entries of a result that are counts or labels, not quality measures.
COUNTS = MetricAccumulator.COUNTS


def metric_lower_is_better(name: str) -> bool:
    """Whether a smaller value of metric ``name`` is better (``rmse/x`` reads as ``rmse``).

    The direction is the one the metric accumulators declare (``DIRECTIONS``), whatever
    the task: a metric name means the same in every kind that reports it.

    Raises:
        ConfigError: for a metric whose direction is not known.
    """
    for cls in _accumulator_classes():
        try:
            return cls.lower_is_better(name)
        except KeyError:
            continue
    raise ConfigError(
        f"metric {name!r}: unknown direction (is lower or higher better?); leave it out of the Delta_m metrics"
    )


def _accumulator_classes() -> list:
    tuple(KINDS)  # reading the registry loads the built-in kinds, whose accumulators are subclasses
    found, stack = [], [MetricAccumulator]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def default_metrics(results: Results) -> dict[str, list[str]]:
    """Every task's summary metrics: all but the counts and the per-class/per-output entries."""
    return {task: [k for k in m if k not in COUNTS and "/" not in k] for task, m in results.items()}


def relative_changes(
    run: Results, baseline: Results, metrics: Optional[Mapping[str, Sequence[str]]] = None
) -> dict[str, dict[str, float]]:
    """``{task: {metric: sign * (run - base) / base * 100}}``, sign -1 where lower is better.

    ``metrics`` picks ``{task: [metric, ...]}`` (default: :func:`default_metrics` of ``run``).

    Raises:
        DataError: a task or metric missing from the baseline or the run, or a zero baseline value.
    """
    chosen = default_metrics(run) if metrics is None else metrics
    if not chosen:
        raise DataError("Delta_m: no task to compare")
    out: dict[str, dict[str, float]] = {}
    for task, names in chosen.items():
        if task not in baseline:
            raise DataError(
                f"Delta_m: task {task!r} has no baseline result; baseline tasks: {', '.join(baseline) or '(none)'}"
            )
        if task not in run:
            raise DataError(f"Delta_m: task {task!r} is not in the run's results; run tasks: {', '.join(run)}")
        if not names:
            raise DataError(f"Delta_m: task {task!r} has no metric to compare (no labels in the set?)")
        out[task] = {}
        for name in names:
            for where, res in (("baseline", baseline), ("run", run)):
                if name not in res[task]:
                    raise DataError(
                        f"Delta_m: metric {task}/{name} is missing from the {where}; it has "
                        f"{', '.join(k for k in res[task] if k not in COUNTS) or '(no metrics)'}"
                    )
            base, value = float(baseline[task][name]), float(run[task][name])
            if base == 0:
                raise DataError(f"Delta_m: baseline {task}/{name} is 0, a relative change is undefined")
            sign = -1.0 if metric_lower_is_better(name) else 1.0
            out[task][name] = sign * (value - base) / abs(base) * 100.0
    return out


def delta_m(run: Results, baseline: Results, metrics: Optional[Mapping[str, Sequence[str]]] = None) -> float:
    """Delta_m in percent of ``run`` over ``baseline`` (see the module docstring)."""
    changes = relative_changes(run, baseline, metrics)
    return sum(sum(c.values()) / len(c) for c in changes.values()) / len(changes)


def parse_metric_list(text: str) -> dict[str, list[str]]:
    """``"segm/miou,depth/rmse"`` -> ``{"segm": ["miou"], "depth": ["rmse"]}``."""
    out: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "/" not in item:
            raise ConfigError(f"--metrics: {item!r} must look like task/metric, e.g. segm/miou")
        task, name = item.split("/", 1)
        out.setdefault(task, []).append(name)
    if not out:
        raise ConfigError("--metrics: empty list")
    return out


def _results_of(data, path: Path) -> dict:
    """The ``{task: {metric: value}}`` of an eval JSON (its ``metrics``) or of a bare mapping."""
    if isinstance(data, Mapping) and isinstance(data.get("metrics"), Mapping):
        data = data["metrics"]
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise DataError(
            f"{path}: not a result file: expected `hydranet eval --json` output or {{task: {{metric: value}}}}"
        )
    if not data:
        raise DataError(f"{path}: no results in the file (expected {{task: {{metric: value}}}})")
    for task, m in data.items():
        for name, value in m.items():
            if name not in COUNTS and not finite_number(value):
                raise DataError(f"{path}: {task}/{name} must be a finite number, got {value!r}")
    return {task: dict(m) for task, m in data.items()}


def load_results(paths: Union[str, Path, Sequence[Union[str, Path]]]) -> dict:
    """Merge result files (``hydranet eval --json`` outputs or ``{task: {metric: value}}``) into one.

    Raises:
        DataError: a missing or unreadable file, or a task found in two files.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    merged: dict = {}
    origin: dict = {}
    for path in map(Path, paths):
        data = read_json(path, "result file")
        for task, m in _results_of(data, path).items():
            if task in merged:
                raise DataError(f"{path}: task {task!r} is also in {origin[task]}; give each baseline once")
            merged[task], origin[task] = m, path
    return merged


def format_delta(changes: Mapping[str, Mapping[str, float]], value: float) -> str:
    """A plain-text table of the relative changes (in %, + = better) and Delta_m."""
    rows = [
        (task if i == 0 else "", name, f"{c:+.2f}")
        for task, m in changes.items()
        for i, (name, c) in enumerate(m.items())
    ]
    rows.append(("Delta_m", "", f"{value:+.2f}"))
    header = ("task", "metric", "change %")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:>{widths[2]}}",
        "  ".join("-" * w for w in widths),
    ]
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}" for a, b, c in rows]
    return "\n".join(lines)
