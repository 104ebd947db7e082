"""Several data sets in one run: sampling weights, label routing and class offsets.

``data.train`` may be a list of data sets, each a dataset config (see :mod:`.factory`) plus::

    name: nyud                 # how logs and metrics name it (default: set<i>)
    weight: 3                  # sampling weight (> 0, default 1)
    tasks: {segm: segmentation, depth: depth}   # task <- this set's label field; tasks it
                               # does not list get no label from it (a missing label)
    class_offset: {segm: 40}   # one head over the union: this set's class ids + 40

An epoch has as many samples as the sets together (``sum(len)``); set ``i`` gives exactly its
share ``weight_i / sum(weights)`` of them (largest remainder rounding), each set's samples
drawn from its own seeded permutations (repeated when its share exceeds its size), and the
whole epoch shuffled by ``(seed, epoch)``. The order is the same on every rank, which then
takes its slice as with one data set, so the global batches (and torchrun's exact loss
normalisation) are unchanged.

``data.val`` may map names to data sets (same keys, no ``weight``): each is evaluated on its
own, on the tasks it labels, and reported as ``<name>/<task>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import torch
from torch.utils.data import Dataset

from ..config import is_named_val, parse_dataset
from ..errors import ConfigError, DataError
from ..tasks import TaskSpec, parse_tasks
from .factory import build_dataset

MEMBER_KEYS = ("name", "weight", "tasks", "class_offset")


@dataclass
class Member:
    """One data set of a run: its name, weight, dataset, tasks it labels and class offsets."""

    name: str
    weight: float
    dataset: Dataset
    tasks: list
    offsets: dict = field(default_factory=dict)  # task -> first class id in the union head
    ranges: dict = field(default_factory=dict)  # task -> number of classes this set may use


class _Reseed:
    """The ``transform.reseed`` that :class:`~hydranet.training.sampler.SeededSamples` calls,
    passed on to every member's transform."""

    def __init__(self, members):
        self.members = members

    def reseed(self, seq) -> None:
        for m in self.members:
            tf = getattr(m.dataset, "transform", None)
            if hasattr(tf, "reseed"):
                tf.reseed(seq)


def largest_remainder(total: int, weights: Sequence[float]) -> list[int]:
    """Integers summing to ``total`` in the proportions of ``weights`` (Hamilton's method)."""
    s = float(sum(weights))
    exact = [total * w / s for w in weights]
    counts = [int(e) for e in exact]
    rest = total - sum(counts)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[:rest]:
        counts[i] += 1
    return counts


class MultiDataset(Dataset):
    """The members' samples one after another; class offsets applied; see the module docstring."""

    def __init__(self, members: Sequence[Member], tasks: Sequence[TaskSpec]):
        self.members = list(members)
        self.tasks = {t.name: t for t in tasks}
        self.starts = []
        n = 0
        for m in self.members:
            self.starts.append(n)
            n += len(m.dataset)
        self.size = n
        self.transform = _Reseed(self.members)

    def __len__(self) -> int:
        return self.size

    def locate(self, index: int) -> tuple[int, int]:
        """``(member, index inside it)`` of a global index."""
        for k in range(len(self.members) - 1, -1, -1):
            if index >= self.starts[k]:
                return k, index - self.starts[k]
        raise IndexError(index)

    def __getitem__(self, index: int) -> dict:
        k, local = self.locate(int(index))
        member = self.members[k]
        item = member.dataset[local]
        for task, offset in member.offsets.items():
            if task not in item:
                continue
            label = item[task]
            valid = label != self.tasks[task].ignore_index
            if valid.any() and int(label[valid].max()) >= member.ranges[task]:
                raise DataError(
                    f"{item.get('id', local)} ({member.name}): task {task!r} class id {int(label[valid].max())} "
                    f"is outside this set's {member.ranges[task]} classes (class_offset {offset})"
                )
            item[task] = torch.where(valid, label + offset, label)
        return item

    def epoch_order(self, seed: int, epoch: int) -> list[int]:
        """The global indices of epoch ``epoch``: each member's exact share, shuffled together."""
        counts = largest_remainder(self.size, [m.weight for m in self.members])
        g = torch.Generator().manual_seed(seed * 100_003 + epoch)
        drawn = []
        for m, start, count in zip(self.members, self.starts, counts):
            n = len(m.dataset)
            picks = []
            while len(picks) < count:
                picks += torch.randperm(n, generator=g).tolist()
            drawn += [start + i for i in picks[:count]]
        return [drawn[i] for i in torch.randperm(len(drawn), generator=g).tolist()]


def _member_tasks(options, tasks: Sequence[TaskSpec], where: str) -> tuple[list, Optional[dict]]:
    """The tasks a set labels and its ``fields`` (task -> label field) from its ``tasks`` key."""
    spec = options.tasks
    names = [t.name for t in tasks]
    if spec is None:
        return list(tasks), None
    if isinstance(spec, list):
        spec = {name: None for name in spec}
    if not spec:
        raise ConfigError(f"{where}.tasks: empty; name the tasks this data set labels")
    unknown = [k for k in spec if k not in names]
    if unknown:
        raise ConfigError(f"{where}.tasks: unknown task(s) {unknown}; the config's tasks: {', '.join(names)}")
    if options.fields is not None:
        raise ConfigError(f"{where}: give either tasks (task: label field) or fields, not both")
    fields = {k: v for k, v in spec.items() if v is not None}
    return [t for t in tasks if t.name in spec], fields or None


def build_member(
    entry: Any, tasks: Sequence[TaskSpec], train: bool, where: str, index: int, normalization=None
) -> Member:
    """One data set of ``data.train`` (a list entry) or of a named ``data.val``."""

    options = parse_dataset(entry, where)  # typed: weight > 0, offsets >= 0, ... (ConfigError naming the field)
    name = options.name or f"set{index}"
    member_tasks, fields = _member_tasks(options, tasks, where)
    offsets = dict(options.class_offset or {})
    by_name = {t.name: t for t in member_tasks}
    for task, offset in offsets.items():
        if task not in by_name or by_name[task].kind != "segmentation":
            raise ConfigError(f"{where}.class_offset.{task}: not a segmentation task this data set labels")
        if offset >= by_name[task].classes:
            raise ConfigError(
                f"{where}.class_offset.{task}: {offset} is not below the head's {by_name[task].classes} classes"
            )
    cfg = options.model_dump(exclude_unset=True, exclude_none=True, by_alias=True, exclude=set(MEMBER_KEYS))
    if fields:
        cfg["fields"] = fields
    dataset = build_dataset(cfg, member_tasks, train=train, normalization=normalization)
    ranges = {t: by_name[t].classes - int(o) for t, o in offsets.items()}
    return Member(name, float(options.weight or 1.0), dataset, member_tasks, offsets, ranges)


def _check_offsets(members: Sequence[Member], tasks: Sequence[TaskSpec], where: str) -> None:
    """Class ranges of the sets sharing a head: distinct offsets; each set's range ends at the next."""
    for task in tasks:
        feeding = [(i, m) for i, m in enumerate(members) if any(t.name == task.name for t in m.tasks)]
        if not any(task.name in m.offsets for _, m in feeding):
            continue
        starts = sorted((m.offsets.get(task.name, 0), i) for i, m in feeding)
        for (a, i), (b, j) in zip(starts, starts[1:]):
            if a == b:
                raise ConfigError(
                    f"{where}[{j}].class_offset.{task.name}: {b} overlaps {where}[{i}] (both start the "
                    f"{task.name!r} classes at {a}); give each data set its own class range"
                )
        for (a, i), nxt in zip(starts, starts[1:] + [(task.classes, None)]):
            members[i].offsets.setdefault(task.name, 0)
            members[i].ranges[task.name] = nxt[0] - a


def build_train_data(cfg: Any, tasks: Sequence[TaskSpec], normalization=None) -> Dataset:
    """``data.train``: one data set (as before) or a :class:`MultiDataset` over a list."""

    tasks = parse_tasks(list(tasks))
    if isinstance(cfg, Mapping) and not any(k in cfg for k in MEMBER_KEYS):
        return build_dataset(cfg, tasks, train=True, normalization=normalization)
    entries = [cfg] if isinstance(cfg, Mapping) else cfg
    if not isinstance(entries, (list, tuple)) or not entries:
        raise ConfigError("data.train: a data set (mapping) or a non-empty list of data sets")
    listed = isinstance(cfg, (list, tuple))
    members = [
        build_member(e, tasks, True, f"data.train[{i}]" if listed else "data.train", i, normalization)
        for i, e in enumerate(entries)
    ]
    names = [m.name for m in members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"data.train: data set name(s) {dup} used twice; give each a distinct name")
    _check_offsets(members, tasks, "data.train")
    return MultiDataset(members, tasks)


def build_val_sets(cfg: Any, tasks: Sequence[TaskSpec], normalization=None, train_cfg: Any = None) -> dict:
    """``{name: (dataset, tasks it labels)}`` of a named ``data.val``; ``{None: ...}`` for one set.

    When ``data.train`` is a list, every name of a named ``data.val`` must be one of its sets,
    whose ``tasks`` and ``class_offset`` the validation set takes unless it gives its own.
    """

    tasks = parse_tasks(list(tasks))
    train_sets = {}
    if isinstance(train_cfg, (list, tuple)):
        train_sets = {e.get("name", f"set{i}"): e for i, e in enumerate(train_cfg) if isinstance(e, Mapping)}
    if not is_named_val(cfg):
        if isinstance(cfg, Mapping) and any(k in cfg for k in MEMBER_KEYS):
            m = build_member(cfg, tasks, False, "data.val", 0, normalization)
            return {None: (MultiDataset([m], tasks), m.tasks)}
        return {None: (build_dataset(cfg, tasks, train=False, normalization=normalization), tasks)}
    out = {}
    for i, (name, entry) in enumerate(cfg.items()):
        if "weight" in entry:
            raise ConfigError(f"data.val.{name}.weight: validation sets are not sampled; remove it")
        if train_sets:
            if name not in train_sets:
                raise ConfigError(
                    f"data.val.{name}: no training data set is named {name!r}; data.train names: "
                    f"{', '.join(map(str, train_sets))}"
                )
            inherited = {k: train_sets[name][k] for k in ("tasks", "class_offset") if k in train_sets[name]}
            entry = {**inherited, **entry}
        m = build_member({"name": name, **entry}, tasks, False, f"data.val.{name}", i, normalization)
        out[str(name)] = (MultiDataset([m], tasks), m.tasks)
    return out
