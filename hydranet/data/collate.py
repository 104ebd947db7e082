"""Batching dataset items whose labels may be missing, and moving a batch to a device.

``collate(samples, tasks)`` returns::

    {"image":   float32 N x 3 x H x W,
     "ids":     [str] * N,
     "targets": {task name: stacked tensor},   # every task, whether or not any sample has it
     "present": {task name: bool tensor N}}    # False where the sample had no label

A missing label is filled with the task's invalid value so the batch stacks: ``ignore_index``
for segmentation and classification, NaN for depth, normals and regression. Losses and
metrics must use ``present`` (and the per-pixel invalid values), never the fill.
"""

from __future__ import annotations

import functools
from typing import Sequence

import torch

from ..errors import DataError
from ..tasks import TaskSpec


def collate(samples: Sequence[dict], tasks: Sequence[TaskSpec]) -> dict:
    """Stack dataset items into a batch (see the module docstring)."""
    if not samples:
        raise DataError("collate: empty list of samples")
    sizes = {tuple(s["image"].shape) for s in samples}
    if len(sizes) != 1:
        detail = ", ".join(f"{s.get('id', i)}: {tuple(s['image'].shape)}" for i, s in enumerate(samples[:6]))
        raise DataError(
            f"collate: images of different sizes in one batch ({detail}); "
            "set a transform size (crop/resize) so that batches have equal sizes"
        )
    images = torch.stack([s["image"] for s in samples])
    h, w = images.shape[-2:]
    targets, present = {}, {}
    for spec in tasks:
        have = [spec.name in s for s in samples]
        stacked = [s[spec.name] if ok else spec.task_kind.fill(spec, h, w) for s, ok in zip(samples, have)]
        try:
            targets[spec.name] = torch.stack(stacked)
        except RuntimeError as exc:
            ids = [s.get("id", i) for i, s in enumerate(samples)]
            raise DataError(f"collate: task {spec.name!r} labels of samples {ids} do not stack: {exc}") from exc
        present[spec.name] = torch.tensor(have, dtype=torch.bool)
    return {"image": images, "ids": [str(s.get("id", "")) for s in samples], "targets": targets, "present": present}


def make_collate(tasks: Sequence[TaskSpec]):
    """A picklable ``collate_fn`` for ``DataLoader`` (works with worker processes)."""
    return functools.partial(collate, tasks=list(tasks))


def batch_to(batch: dict, device: torch.device) -> dict:
    """Move a collated batch's tensors to ``device``."""
    return {
        "image": batch["image"].to(device, non_blocking=True),
        "ids": batch.get("ids", []),
        "targets": {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()},
        "present": {k: v.to(device, non_blocking=True) for k, v in batch["present"].items()},
    }
