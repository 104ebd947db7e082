"""A dataset of image-level targets described by a JSON file.

The file holds a list of records (or ``{"records": [...]}``)::

    [{"image": "img/a.jpg", "company": "acme", "model": 17, "diameter": 4.2, "length": 30.0},
     {"image": "img/b.jpg", "company": "zenith", "diameter": null}]

A task reads the field named by ``fields[task]`` or, by default, its own name (dense tasks read
the field named after their kind, a path as in :mod:`hydranet.data.listfile`). A field that is
absent or null means the label is missing. Classification values are class ids (int) or class
names; names are mapped through a **vocabulary** ``{task name: [class names in id order]}``
built from the training file by :func:`build_vocab` and saved with :func:`save_vocab`, so that
evaluation (``JsonDataset(..., vocab=saved)``) uses the same ids. Regression values are a
number or a list of ``outputs`` numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ..errors import ConfigError, DataError
from ..jsonfile import read_json
from ..tasks import LabelSources, TaskSpec, parse_tasks
from .base import LabelledDataset
from .io import NYUD_DEPTH_SCALE, load_palette, read_image
from .sample import task_field

log = logging.getLogger("hydranet.data")
Vocab = dict  # {task name: [class name, ...]}, list position = class id


def _read_json(path: Path, what: str) -> Any:
    """Parsed JSON of ``path`` (finite numbers only, bounded nesting: :mod:`hydranet.jsonfile`);
    DataError naming the file when it is missing, unreadable or invalid."""
    return read_json(path, what)


def read_records(json_file: Union[str, Path]) -> list[dict]:
    """The records of a JSON dataset file; DataError naming the file on any format problem."""
    path = Path(json_file)
    data = _read_json(path, "JSON file")
    if isinstance(data, Mapping):
        data = data.get("records", data.get("samples"))
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of records (or {{'records': [...]}})")
    if not data:
        raise DataError(f"{path}: no records")
    for i, rec in enumerate(data):
        if not isinstance(rec, Mapping):
            raise DataError(f"{path}: record {i} is not an object")
        if not isinstance(rec.get("image"), str) or not rec["image"]:
            raise DataError(f"{path}: record {i} has no 'image' path")
    return data


def build_vocab(
    records: Sequence[Mapping[str, Any]], tasks: Sequence[TaskSpec], fields: Optional[Mapping[str, str]] = None
) -> Vocab:
    """Class vocabularies of the classification tasks: ``spec.class_names`` when the task
    names its classes, else the sorted distinct string values found in ``records``."""
    vocab = {}
    for spec in parse_tasks(list(tasks)):
        if not spec.task_kind.vocabulary:
            continue
        if spec.class_names:
            vocab[spec.name] = list(spec.class_names)
            continue
        field = task_field(spec, fields)
        names = {r[field] for r in records if isinstance(r.get(field), str)}
        vocab[spec.name] = sorted(names)
    return vocab


def save_vocab(vocab: Vocab, path: Union[str, Path]) -> None:
    """Write a vocabulary as JSON ``{task name: [class names]}``."""
    Path(path).write_text(
        json.dumps({k: list(v) for k, v in vocab.items()}, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def load_vocab(path: Union[str, Path]) -> Vocab:
    """Read a vocabulary written by :func:`save_vocab`; DataError naming the file if malformed."""
    path = Path(path)
    data = _read_json(path, "vocabulary file")
    if not isinstance(data, Mapping) or not all(
        isinstance(v, list) and all(isinstance(n, str) for n in v) for v in data.values()
    ):
        raise DataError(f"{path}: a vocabulary must map task names to lists of class names")
    return {str(k): list(v) for k, v in data.items()}


class JsonDataset(LabelledDataset):
    """Records of a JSON file (format in the module docstring).

    Args:
        json_file: the JSON file.
        tasks: task specs.
        root: folder that relative paths are resolved against (default: the JSON file's folder).
        vocab: class vocabularies: None builds them from this file (the training set), or a
            mapping, or the path of a file written by :func:`save_vocab`.
        transform: ``transform(raw_sample, tasks) -> item``.
        fields: ``{task name: record field}`` overrides.
        skip_bad: skip records whose image or labels are bad.
        depth_scale, palette: as in :class:`~hydranet.data.listfile.ListDataset`, for dense fields.
    """

    def __init__(
        self,
        json_file: Union[str, Path],
        tasks: Sequence[TaskSpec],
        root=None,
        vocab: Union[None, Vocab, str, Path] = None,
        transform: Optional[Callable] = None,
        fields: Optional[Mapping[str, str]] = None,
        skip_bad: bool = False,
        depth_scale: float = NYUD_DEPTH_SCALE,
        palette=None,
    ):
        super().__init__(tasks, fields, transform, skip_bad)
        self.json_file = Path(json_file)
        self.root = Path(root) if root is not None else self.json_file.parent
        self.records = read_records(self.json_file)
        self.depth_scale = float(depth_scale)
        self.palette = load_palette(palette)
        self.label_sources = LabelSources({"palette": self.palette, "depth_scale": self.depth_scale})
        if vocab is None:
            vocab = build_vocab(self.records, self.tasks, self.fields)
        elif isinstance(vocab, (str, Path)):
            vocab = load_vocab(vocab)
        self.vocab: Vocab = {k: list(v) for k, v in dict(vocab).items()}
        self._index = {}
        for spec in self.tasks:
            if not spec.task_kind.vocabulary:
                continue
            names = self.vocab.get(spec.name)
            if names is None and spec.class_names:
                names = self.vocab[spec.name] = list(spec.class_names)
            if names is None:
                continue
            if len(names) > spec.classes:
                raise ConfigError(
                    f"task {spec.name!r}: {len(names)} class names ({self.json_file}) but classes={spec.classes}"
                )
            self._index[spec.name] = {n: i for i, n in enumerate(names)}

    def __len__(self) -> int:
        return len(self.records)

    def labelled_tasks(self) -> set:
        fields = {spec.name: task_field(spec, self.fields) for spec in self.tasks}
        return {name for name, f in fields.items() if any(r.get(f) is not None for r in self.records)}

    def sample_id(self, index: int) -> str:
        rec = self.records[index]
        return str(rec.get("id", Path(rec["image"]).with_suffix("")))

    def _path(self, text: str) -> Path:
        p = Path(text).expanduser()
        return p if p.is_absolute() else self.root / p

    def load_raw(self, index: int) -> tuple[dict, dict]:
        rec = self.records[index]
        where = f"{self.json_file} record {index}"
        image_path = self._path(rec["image"])
        sample = {"image": read_image(image_path), "id": self.sample_id(index)}
        sources = {"image": str(image_path)}
        for spec in self.tasks:
            field = task_field(spec, self.fields)
            value = rec.get(field)
            if value is None:
                continue
            if spec.dense:
                if not isinstance(value, str):
                    raise DataError(f"{where}: field {field!r} must be a path, got {value!r}")
                path = self._path(value)
                sources[spec.name] = str(path)
                sample[spec.name] = spec.task_kind.read_label(spec, path, self.label_sources)
                continue
            sources[spec.name] = where
            sample[spec.name] = spec.task_kind.parse_value(spec, value, where, self._index)
        return sample, sources
