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
from ..tasks import TaskSpec
from .transforms import normalize_image


def task_field(spec: TaskSpec, fields: Optional[Mapping[str, str]] = None) -> str:
    """The source field of a task: ``fields[name]`` if given, else the kind for dense tasks
    (``segmentation``/``depth``/``normals``) and the task name for image-level tasks."""
    if fields and spec.name in fields:
        return fields[spec.name]
    return spec.kind if spec.dense else spec.name


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
        value, src = sample[spec.name], sources.get(spec.name, img_src)
        if spec.task_kind.dense and np.shape(value)[:2] != (h, w):  # either file may be the wrong one: name both
            raise DataError(
                f"{src}: {spec.task_kind.name} size {np.shape(value)[1]}x{np.shape(value)[0]} (WxH) does not "
                f"match the size of the image {img_src}, {w}x{h}"
            )
        spec.task_kind.check_label(spec, value, (h, w), src)


def label_to_tensor(spec: TaskSpec, value) -> torch.Tensor:
    """One raw label -> its tensor form (see the module docstring for shapes and dtypes)."""
    return spec.task_kind.label_to_tensor(spec, value)


def to_tensor_sample(sample: dict, tasks: Sequence[TaskSpec]) -> dict:
    """Raw sample -> dataset item: normalised image tensor, ``id`` and one tensor per present task."""
    out = {"image": normalize_image(sample["image"]), "id": str(sample.get("id", ""))}
    for spec in tasks:
        if spec.name in sample and sample[spec.name] is not None:
            out[spec.name] = label_to_tensor(spec, sample[spec.name])
    return out
