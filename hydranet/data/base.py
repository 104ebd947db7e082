"""The base of the file-backed datasets: load, check, transform, and optionally skip bad samples.

A subclass implements ``__len__``, ``sample_id(index)`` and ``load_raw(index)``, which returns
``(raw_sample, sources)``: the raw sample (see :mod:`hydranet.data.sample`) and, per key, the
file it came from (used to name the file in errors). ``__getitem__`` checks the raw sample,
applies the transform (or just normalises) and returns a dataset item.

With ``skip_bad=True`` a sample that raises :class:`DataError` is recorded in ``bad_samples``
(id and message) and the next good sample is returned instead; ``report()`` logs a warning
with the count. Each DataLoader worker keeps its own list, so for a complete list run
``scan()`` once in the main process.
"""

from __future__ import annotations

import logging
from typing import Callable, Mapping, Optional, Sequence

from torch.utils.data import Dataset

from ..errors import DataError
from ..tasks import TaskSpec, parse_tasks
from .sample import check_fields, to_tensor_sample, validate_raw

log = logging.getLogger("hydranet.data")


class LabelledDataset(Dataset):
    """Shared machinery of Hydranet's datasets (see the module docstring)."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        fields: Optional[Mapping[str, str]] = None,
        transform: Optional[Callable] = None,
        skip_bad: bool = False,
    ):
        self.tasks = parse_tasks(list(tasks))
        check_fields(self.tasks, fields)
        self.fields = dict(fields or {})
        self.transform = transform
        self.skip_bad = skip_bad
        self.bad_samples: list[tuple[str, str]] = []
        self._bad_index: set[int] = set()

    # -- to implement
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_id(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def load_raw(self, index: int) -> tuple[dict, dict]:  # pragma: no cover - abstract
        raise NotImplementedError

    def labelled_tasks(self) -> Optional[set]:
        """Names of the tasks with at least one label in the set, when the index tells without
        reading the files (list and JSON sets); None when it cannot tell cheaply."""
        return None

    # -- shared
    def load_checked(self, index: int) -> dict:
        """The raw sample at ``index``, checked against the tasks (DataError if bad)."""
        raw, sources = self.load_raw(index)
        validate_raw(raw, self.tasks, sources)
        return raw

    def _item(self, index: int) -> dict:
        raw = self.load_checked(index)
        if self.transform is not None:
            return self.transform(raw, self.tasks)
        return to_tensor_sample(raw, self.tasks)

    def __getitem__(self, index: int) -> dict:
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} samples")
        if not self.skip_bad:
            return self._item(index)
        for step in range(n):
            i = (index + step) % n
            if i in self._bad_index:
                continue
            try:
                return self._item(i)
            except DataError as exc:
                self._record_bad(i, exc)
        raise DataError(
            f"{type(self).__name__}: all {n} samples are bad; first: "
            f"{self.bad_samples[0][1] if self.bad_samples else '?'}"
        )

    def _record_bad(self, index: int, exc: Exception) -> None:
        if index in self._bad_index:
            return
        self._bad_index.add(index)
        self.bad_samples.append((self.sample_id(index), str(exc)))
        log.debug("skipping bad sample %s: %s", self.sample_id(index), exc)

    def scan(self, progress: bool = False) -> list[tuple[str, str]]:
        """Load and check every sample once (no transform); return and record the bad ones."""
        indices = range(len(self))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"checking {type(self).__name__}", unit="sample")
        for i in indices:
            try:
                self.load_checked(i)
            except DataError as exc:
                self._record_bad(i, exc)
        return list(self.bad_samples)

    def report(self) -> str:
        """A one-line summary of the bad samples skipped so far, also logged as a warning
        (logger ``hydranet.data``)."""
        n = len(self.bad_samples)
        if n == 0:
            return f"{type(self).__name__}: no bad samples"
        shown = "; ".join(f"{sid}: {msg}" for sid, msg in self.bad_samples[:5])
        text = f"{type(self).__name__}: skipped {n} bad sample(s) of {len(self)}: {shown}" + (" ..." if n > 5 else "")
        log.warning(text)
        return text


def _labelled(dataset) -> Optional[set]:
    """Tasks with a label somewhere in ``dataset`` (a set of several: any member's), or None."""
    members = getattr(dataset, "members", None)
    if members is not None:
        found = [_labelled(m.dataset) for m in members]
        if any(f is None for f in found):
            return None
        return set().union(*found)
    return dataset.labelled_tasks() if hasattr(dataset, "labelled_tasks") else None


def dataset_source(dataset) -> str:
    """`` (FILE, ...)``: the list or JSON file(s) a data set reads, for errors; empty for others."""
    members = [m.dataset for m in getattr(dataset, "members", [])] or [dataset]
    sources = [str(getattr(d, "list_file", None) or getattr(d, "json_file", "")) for d in members]
    source = ", ".join(s for s in sources if s)
    return f" ({source})" if source else ""


def require_labels(dataset, where: str) -> None:
    """Refuse a training set in which no task has a single label (training it would be a no-op).

    Raises:
        DataError: naming ``where`` (e.g. ``data.train``), the set's file(s) and the tasks.
    """
    labelled = _labelled(dataset)
    if labelled is None or labelled:
        return
    tasks = dataset.tasks.values() if isinstance(dataset.tasks, Mapping) else dataset.tasks
    names = ", ".join(t.name for t in tasks)
    raise DataError(
        f"{where}{dataset_source(dataset)}: no configured task ({names}) has a label in any of "
        f"its {len(dataset)} samples; check the column or field names"
    )
