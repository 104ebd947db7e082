"""Evaluate a model over a whole data set: metrics (accumulated over the set) and task losses."""
from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..losses import compute_losses
from ..tasks import TaskSpec
from .metrics import MultiTaskMetrics


def batch_to(batch: dict, device: torch.device) -> dict:
    """Move a collated batch's tensors to ``device``."""
    return {
        "image": batch["image"].to(device, non_blocking=True),
        "ids": batch.get("ids", []),
        "targets": {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()},
        "present": {k: v.to(device, non_blocking=True) for k, v in batch["present"].items()},
    }


@torch.inference_mode()
def evaluate(model: Callable, loader: Iterable, tasks: Sequence[TaskSpec], device="cpu",
             progress: bool = False, autocast_dtype: Optional[torch.dtype] = None) -> dict:
    """Run ``model`` over ``loader`` and return ``{"metrics": {task: {...}}, "loss": {task: mean}}``.

    ``model`` maps an image batch to ``{task: output}`` at the input size (a HydraNet
    or an optimised inference module). Losses are averaged over the batches where the
    task has labels; metrics accumulate over every labelled pixel/sample of the set.
    """
    device = torch.device(device)
    metrics = MultiTaskMetrics(tasks, resize=True)
    loss_sums: dict[str, float] = {}
    loss_counts: dict[str, int] = {}
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        batch = batch_to(batch, device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(batch["image"])
        outputs = {k: v.float() for k, v in outputs.items()}
        metrics.update(outputs, batch)
        for name, value in compute_losses(outputs, batch, tasks).items():
            loss_sums[name] = loss_sums.get(name, 0.0) + float(value)
            loss_counts[name] = loss_counts.get(name, 0) + 1
    return {
        "metrics": metrics.compute(),
        "loss": {k: loss_sums[k] / loss_counts[k] for k in loss_sums},
    }
