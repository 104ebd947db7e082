"""Random loss weighting (Lin, Ye, Xu, Shi and Zhang, "Reasonable effectiveness of random
weighting: a litmus test for multi-task learning", TMLR 2022).

Every step draws ``lambda ~ N(0, I)`` over the tasks present and weights the losses by
``softmax(lambda)`` (they sum to 1). The draw uses torch's global generator, which the
trainer seeds and checkpoints, so runs are reproducible and resume exactly. Under torchrun
every rank holds the same generator state (same seed, same number of draws), so the weights
agree across ranks.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import Tensor

from .weighting import NoWeightingOptions, TaskLike, Weighting


class RandomLossWeighting(Weighting):
    """RLW: fresh softmax-of-normal weights every step (see the module docstring)."""

    options_model = NoWeightingOptions

    def __init__(self, tasks: Iterable[TaskLike]):
        super().__init__(tasks)
        self._step_weights: dict[str, float] = {}

    def forward(self, losses: Mapping[str, Tensor]):
        self._check(losses)
        names = [n for n in self.task_names if n in losses]
        if names:
            draw = torch.softmax(torch.randn(len(names)), dim=0)
            self._step_weights = {n: float(w) for n, w in zip(names, draw)}
        return super().forward(losses)

    def weight(self, name: str, loss: Tensor) -> Tensor:
        value = self._step_weights.get(name, 1.0 / len(self.task_names))
        return torch.tensor(value, dtype=loss.dtype, device=loss.device)
