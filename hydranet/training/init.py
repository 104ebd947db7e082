"""``train.init``: start a new run from the weights of another model.

The source is a Hydranet checkpoint (a run's ``best.pt``/``last.pt``), an original Multi-Task
RefineNet file (converted in memory) or a known model name (``mtrn-nyud-joint``, fetched and
converted by :mod:`hydranet.weights.hub`). Tensors are copied by name where the shapes match;
every tensor of the new model ends up in exactly one row of the report:

* ``loaded``: copied from the source;
* ``remapped``: a class-indexed tensor (the last layer of a segmentation or classification
  head) whose rows were copied class by class, by class name where both tasks name their
  classes, or by the task's ``options.init_classes: {new_id: old_id}``; classes with no source
  keep their fresh initialisation;
* ``new``: not in the source (a new head): freshly initialised;
* ``skipped``: in the source with another shape (the reason is given); freshly initialised.
  ``train.init_strict: true`` refuses any skip.

Source tensors the new model has no place for are reported as ``unused``. A task reads the
source's head of the same name, or of ``options.init_from: NAME``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from ..checkpoint import read_model_checkpoint
from ..errors import CheckpointError, ConfigError
from ..measure import aligned_rows
from ..tasks import TaskSpec, parse_tasks
from ..weights.hub import KNOWN_MODELS, file_or_known_model
from ..weights.mtrn import convert_file


@dataclass
class InitReport:
    """What :func:`init_model` did with every tensor (see the module docstring)."""

    source: str
    loaded: list = field(default_factory=list)
    remapped: list = field(default_factory=list)  # (tensor, detail)
    new: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (tensor, reason)
    unused: list = field(default_factory=list)

    def counts(self) -> dict:
        return {k: len(getattr(self, k)) for k in ("loaded", "remapped", "new", "skipped", "unused")}

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "counts": self.counts(),
            "loaded": list(self.loaded),
            "remapped": [{"tensor": k, "detail": d} for k, d in self.remapped],
            "new": list(self.new),
            "skipped": [{"tensor": k, "reason": r} for k, r in self.skipped],
            "unused": list(self.unused),
        }

    def table(self) -> str:
        """Counts per module (``encoder``, ``decoder``, ``heads.<task>``), then every remapped and
        skipped tensor with its reason."""
        groups: dict[str, dict[str, int]] = {}
        for status in ("loaded", "remapped", "new", "skipped"):
            for entry in getattr(self, status):
                name = entry[0] if isinstance(entry, tuple) else entry
                parts = name.split(".")
                group = ".".join(parts[:2]) if parts[0] == "heads" else parts[0]
                groups.setdefault(group, {"loaded": 0, "remapped": 0, "new": 0, "skipped": 0})[status] += 1
        header = ("module", "loaded", "remapped", "new", "skipped")
        rows = [header] + [(g, *(str(c[s]) for s in header[1:])) for g, c in groups.items()]
        lines = [f"init from {self.source}:", *aligned_rows(rows, indent="  ")]
        lines += [f"  remapped {name}: {detail}" for name, detail in self.remapped]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        if self.unused:
            shown = ", ".join(self.unused[:6]) + (" ..." if len(self.unused) > 6 else "")
            lines.append(f"  unused (not in this model): {len(self.unused)} tensor(s): {shown}")
        return "\n".join(lines)


def read_source(source: Any) -> tuple[dict, dict, str]:
    """``(config, state_dict, description)`` of a checkpoint file, an original MTRN file or a
    known model name.

    Raises:
        ConfigError: ``source`` is neither a file nor a known model name.
        CheckpointError: the file is neither format (the Hydranet reader's reason).
    """

    if not isinstance(source, (str, Path)) or not str(source):
        raise ConfigError(f"train.init: a checkpoint path or a known model name, got {source!r}")
    path = file_or_known_model(source)
    if not path.is_file():
        raise ConfigError(
            f"train.init: {str(source)!r} is neither a file nor a known model name (known: {', '.join(KNOWN_MODELS)})"
        )
    label = str(source) if str(source) == str(path) else f"{source} ({path})"
    try:
        ckpt, _ = read_model_checkpoint(path)
        return dict(ckpt["config"]), dict(ckpt["model"]), label
    except CheckpointError as first:
        try:
            config, state, _ = convert_file(path)
        except CheckpointError:
            raise CheckpointError(
                f"train.init: {path}: neither a Hydranet checkpoint nor an original Multi-Task RefineNet file ({first})"
            ) from None
        return config, state, f"{label}, converted from the original format"


def _class_layer(head: nn.Module) -> Optional[str]:
    """The name (inside the head) of its last conv/linear layer: the one with a row per class."""
    layers = [n for n, m in head.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[-1] if layers else None


def class_map(new: TaskSpec, old: TaskSpec, where: str) -> dict[int, tuple[int, str]]:
    """``{new id: (old id, "name" | "map")}``: the explicit ``options.init_classes`` first, then
    equal class names. ConfigError for ids out of range."""
    mapping: dict[int, tuple[int, str]] = {}
    explicit = new.options.get("init_classes") or {}
    if not isinstance(explicit, Mapping):
        raise ConfigError(f"{where}.options.init_classes: a mapping {{new_id: old_id}}, got {explicit!r}")
    for new_id, old_id in explicit.items():
        for value, limit, side in ((new_id, new.classes, "new"), (old_id, old.classes, "source")):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
                raise ConfigError(
                    f"{where}.options.init_classes: {new_id!r}: {old_id!r}: {side} class id {value!r} is not in "
                    f"0..{limit - 1}"
                )
        mapping[new_id] = (old_id, "map")
    if new.class_names and old.class_names:
        old_ids = {name: i for i, name in enumerate(old.class_names)}
        for i, name in enumerate(new.class_names):
            if i not in mapping and name in old_ids:
                mapping[i] = (old_ids[name], "name")
    return mapping


def _source_key(key: str, head_source: Mapping[str, str]) -> str:
    """The source tensor of ``key``: a head's tensors come from its ``init_from`` task."""
    parts = key.split(".")
    if parts[0] == "heads" and len(parts) > 2:
        return ".".join(["heads", head_source.get(parts[1], parts[1]), *parts[2:]])
    return key


def _remap(target: torch.Tensor, source: torch.Tensor, mapping: dict) -> torch.Tensor:
    out = target.clone()
    for new_id, (old_id, _) in mapping.items():
        out[new_id] = source[old_id]
    return out


def init_model(model: nn.Module, source: Any, strict: bool = False) -> InitReport:
    """Copy the weights of ``source`` (see :func:`read_source`) into ``model`` (a HydraNet).

    Raises:
        ConfigError: no tensor in common; with ``strict``, any skipped tensor (all listed);
            a bad ``options.init_from`` / ``options.init_classes``.
    """
    src_cfg, src_state, label = read_source(source)
    try:
        src_tasks = {t.name: t for t in parse_tasks(src_cfg.get("tasks") or [])}
    except ConfigError:
        src_tasks = {}
    report = InitReport(source=label)
    target = model.state_dict()
    new_state = dict(target)
    used: set[str] = set()
    # per task: the source name of its head, and the class-indexed layer with its class map
    head_source, class_maps = {}, {}
    for i, task in enumerate(model.tasks):
        where = f"tasks[{i}]"
        origin = task.options.get("init_from", task.name)
        if origin != task.name and origin not in src_tasks:
            raise ConfigError(
                f"{where}.options.init_from: the source {label} has no task {origin!r}; its tasks: "
                f"{', '.join(src_tasks) or '(unknown)'}"
            )
        head_source[task.name] = origin
        old = src_tasks.get(origin)
        if task.classes and old is not None and old.classes:
            mapping = class_map(task, old, where)
            differ = task.class_names != old.class_names or task.classes != old.classes
            if mapping and (differ or task.options.get("init_classes")):
                class_maps[task.name] = (_class_layer(model.heads[task.name]), mapping)
    for key, tensor in target.items():
        src_key = _source_key(key, head_source)
        parts = key.split(".")
        if src_key not in src_state:
            report.new.append(key)
            continue
        used.add(src_key)
        value = src_state[src_key]
        task_name = parts[1] if parts[0] == "heads" and len(parts) > 2 else None
        cmap = class_maps.get(task_name)
        in_class_layer = cmap is not None and cmap[0] is not None and ".".join(parts[2:-1]) == cmap[0]
        if in_class_layer and value.shape[1:] == tensor.shape[1:]:
            mapping = cmap[1]
            new_state[key] = _remap(tensor, value.to(tensor.dtype), mapping)
            by_name = sum(1 for _, how in mapping.values() if how == "name")
            fresh = tensor.shape[0] - len(mapping)
            report.remapped.append(
                (
                    key,
                    f"{len(mapping)} of {tensor.shape[0]} classes from the source's {value.shape[0]} "
                    f"({by_name} by name, {len(mapping) - by_name} by init_classes), {fresh} new",
                )
            )
        elif tuple(value.shape) != tuple(tensor.shape):
            report.skipped.append((key, f"shape {tuple(value.shape)} in the source, {tuple(tensor.shape)} here"))
        else:
            new_state[key] = value.to(tensor.dtype)
            report.loaded.append(key)
    report.unused = sorted(set(src_state) - used)
    # BatchNorm's scalar step counters match any model: they do not make a source "in common"
    if not report.remapped and not any(src_state[_source_key(k, head_source)].ndim for k in report.loaded):
        raise ConfigError(
            f"train.init: {label} has no tensor in common with this model (names and shapes differ: "
            f"{len(report.skipped)} by shape, {len(report.new)} of this model's tensors absent from it)"
        )
    if strict and report.skipped:
        listed = "; ".join(f"{k}: {r}" for k, r in report.skipped[:4])
        more = f" (+{len(report.skipped) - 4} more)" if len(report.skipped) > 4 else ""
        raise ConfigError(
            f"train.init_strict: {len(report.skipped)} tensor(s) of {label} cannot be loaded: {listed}{more}"
        )
    model.load_state_dict(new_state, strict=True)
    return report


def write_report(report: InitReport, out_dir: Path) -> Path:
    """``out_dir/init.json``: the full lists of the report."""
    path = Path(out_dir) / "init.json"
    path.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return path
