"""Evaluate a model over a whole data set: metrics (accumulated over the set) and task losses."""

from __future__ import annotations

from typing import Callable, Iterable, Optional, Sequence

import torch
from tqdm.auto import tqdm

from ..data.collate import batch_to
from ..losses import LOSS_FORMS, LocalReduction, batch_statistics, finish_losses
from ..tasks import TaskSpec
from .metrics import MultiTaskMetrics


@torch.inference_mode()
def evaluate(
    model: Callable,
    loader: Iterable,
    tasks: Sequence[TaskSpec],
    device="cpu",
    progress: bool = False,
    autocast_dtype: Optional[torch.dtype] = None,
    reduction: Optional[LocalReduction] = None,
) -> dict:
    """Run ``model`` over ``loader`` and return ``{"metrics": {task: {...}}, "loss": {task: value}}``.

    ``model`` maps an image batch to ``{task: output}`` at the input size (a HydraNet
    or an optimised inference module). Metrics accumulate over every labelled pixel/sample
    of the set. Each task's loss is that of the whole set: its statistics (sums over valid
    elements and their count) are summed over the batches before the loss is formed, so it
    does not depend on the batch size (berHu's threshold is still a per-batch maximum).

    ``reduction``: under torchrun each rank evaluates its shard of the set and the metric
    states and loss statistics are summed over ranks (``RankReduction``): every rank
    returns the numbers of the whole set.
    """
    device = torch.device(device)
    metrics = MultiTaskMetrics(tasks, resize=True)
    totals: dict[str, torch.Tensor] = {
        spec.name: torch.zeros(LOSS_FORMS[spec.loss_name].size, dtype=torch.float64, device=device) for spec in tasks
    }
    for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
        batch = batch_to(batch, device)
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            outputs = model(batch["image"])
        outputs = {k: v.float() for k, v in outputs.items()}
        metrics.update(outputs, batch)
        for name, stats in batch_statistics(outputs, batch, tasks).items():
            totals[name] += stats.to(device, torch.float64)
    if reduction is not None and reduction.world_size > 1:
        metrics.reduce(reduction, device)
    losses = finish_losses(totals, tasks, reduction)
    return {"metrics": metrics.compute(), "loss": {k: float(v) for k, v in losses.items()}}
