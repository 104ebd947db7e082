"""The sample contract: which source field feeds each task, checking raw samples, and tensors.

A **raw sample** (what loaders produce and transforms consume) is a dict with ``"image"``
(uint8 H x W x 3 RGB), ``"id"`` (str) and one entry per task that has a label:

- segmentation: integer H x W class ids (``spec.ignore_index`` = unlabelled);
- depth: float32 H x W metres (0 = no measurement);
- normals: float32 H x W x 3 unit vectors (zero vector = invalid);
- classification: int class id;
- regression: a number or a sequence of ``spec.outputs`` numbers.

A **dataset item** (what datasets return, see :func:`to_tensor_sample`) holds the same keys
as tensors: ``"image"`` float32 3 x H x W ImageNet-normalised, segmentation int64 H x W,
depth float32 1 x H x W, normals float32 3 x H x W, classification int64 scalar, regression
float32 ``(k,)``. A task without a label for the sample has no key (never a zero).
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..tasks import DENSE_KINDS, TaskSpec


def task_field(spec: TaskSpec, fields: Optional[Mapping[str, str]] = None) -> str:
    """The source field of a task: ``fields[name]`` if given, else the kind for dense tasks
    (``segmentation``/``depth``/``normals``) and the task name for image-level tasks."""
    if fields and spec.name in fields:
        return fields[spec.name]
    return spec.kind if spec.kind in DENSE_KINDS else spec.name


def check_fields(tasks: Sequence[TaskSpec], fields: Optional[Mapping[str, str]]) -> None:
    """ConfigError when ``fields`` names a task that is not in ``tasks``."""
    if not fields:
        return
    names = {t.name for t in tasks}
    unknown = sorted(set(fields) - names)
    if unknown:
        raise ConfigError(f"fields: unknown task name(s) {unknown}; tasks are {sorted(names)}")


def validate_raw(sample: dict, tasks: Sequence[TaskSpec], sources: Optional[Mapping[str, str]] = None) -> None:
    """Check a raw sample against its tasks; DataError names the file of the bad entry.

    Checks: the image is H x W x 3 uint8; dense labels have the image's H x W (and 3 channels
    for normals); segmentation ids are ``< classes`` or ``== ignore_index``; classification ids
    likewise; regression values have ``outputs`` entries and are finite.
    """
    sources = sources or {}
    img_src = sources.get("image", sample.get("id", "?"))
    image = sample["image"]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"{img_src}: image must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    for spec in tasks:
        if spec.name not in sample:
            continue
        value = sample[spec.name]
        src = sources.get(spec.name, img_src)
        if spec.dense:
            if value.shape[:2] != (h, w):
                raise DataError(f"{src}: {spec.kind} size {value.shape[1]}x{value.shape[0]} (WxH) does not "
                                f"match the image {img_src} size {w}x{h}")
            if spec.kind == "normals" and (value.ndim != 3 or value.shape[2] != 3):
                raise DataError(f"{src}: normals must be H x W x 3, got shape {value.shape}")
            if spec.kind in ("depth",) and value.ndim != 2:
                raise DataError(f"{src}: depth must be H x W, got shape {value.shape}")
            if spec.kind == "segmentation":
                _check_ids(np.asarray(value), spec, src)
        elif spec.kind == "classification":
            _check_ids(np.asarray([value]), spec, src)
        elif spec.kind == "regression":
            arr = np.asarray(value, dtype=np.float64).reshape(-1)
            if arr.size != spec.outputs:
                raise DataError(f"{src}: task {spec.name!r} expects {spec.outputs} value(s), got {arr.size}")
            if not np.isfinite(arr).all():
                raise DataError(f"{src}: task {spec.name!r} has a non-finite value {arr.tolist()}")


def _check_ids(ids: np.ndarray, spec: TaskSpec, src: str) -> None:
    bad = (ids != spec.ignore_index) & ((ids < 0) | (ids >= spec.classes))
    if bad.any():
        values = np.unique(ids[bad])[:8].tolist()
        raise DataError(f"{src}: task {spec.name!r} has class ids {values} out of range "
                        f"(valid 0..{spec.classes - 1}, ignore {spec.ignore_index})")


def label_to_tensor(spec: TaskSpec, value) -> torch.Tensor:
    """One raw label -> its tensor form (see the module docstring for shapes and dtypes)."""
    if spec.kind == "segmentation":
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.int64))
    if spec.kind == "depth":
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)[None])
    if spec.kind == "normals":
        return torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float32).transpose(2, 0, 1)))
    if spec.kind == "classification":
        return torch.tensor(int(value), dtype=torch.int64)
    if spec.kind == "regression":
        return torch.as_tensor(np.asarray(value, dtype=np.float32).reshape(-1))
    raise ConfigError(f"task {spec.name!r}: unknown kind {spec.kind!r}")


def to_tensor_sample(sample: dict, tasks: Sequence[TaskSpec]) -> dict:
    """Raw sample -> dataset item: normalised image tensor, ``id`` and one tensor per present task."""
    from .transforms import normalize_image

    out = {"image": normalize_image(sample["image"]), "id": str(sample.get("id", ""))}
    for spec in tasks:
        if spec.name in sample and sample[spec.name] is not None:
            out[spec.name] = label_to_tensor(spec, sample[spec.name])
    return out
