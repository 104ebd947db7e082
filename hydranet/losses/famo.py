"""FAMO: Fast Adaptive Multitask Optimization (Liu, Liu, Jin, Stone and Liu, NeurIPS 2023).

FAMO balances the tasks' *rates of loss decrease* with O(1) cost per step (no per-task
gradients). Task logits xi give weights z = softmax(xi); the model minimises
``sum_i z_i log L_i / c`` with ``c = sum_i z_i / L_i`` (detached), whose gradient is that of
``sum_i w_i L_i`` with ``w_i = z_i / (c L_i)``, the weights used here. The logits are then
moved to make every task's log-loss fall at the same rate: their gradient is
``d(sum_i delta_i z_i)/d xi`` with ``delta_i = log L_i(t-1) - log L_i(t)``, plus ``gamma * xi``
(the paper's weight decay, 0.01).

Differences from the paper's code, on purpose: the loss decrease is measured between one
step's batch and the next (the paper re-runs the forward on the same batch after the update,
one more forward per step); the logits are trained by the run's optimiser in the weighting
group (``loss.log_var_lr``; the paper uses Adam with lr 0.025). ``min_losses`` (the L_i*
lower bounds, default 0) are subtracted as in the paper.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..schema.sections import PerTaskNumbers
from ..schema.types import Field, Float, Section
from .weighting import TaskLike, Weighting, _per_task_values

EPS = 1e-8


class FAMOOptions(Section):
    """``loss.options`` of ``famo``."""

    gamma: Float = Field(0.01, ge=0, description="decay of the task logits (the paper's Adam weight decay)")
    min_losses: Optional[PerTaskNumbers] = Field(None, description="lower bound L* of each loss (null: 0)")


class FAMOWeighting(Weighting):
    """FAMO (see the module docstring). Exact under torchrun (it reads the global losses only)."""

    options_model = FAMOOptions

    def __init__(self, tasks: Iterable[TaskLike], gamma: float = 0.01, min_losses: Any = None):
        super().__init__(tasks)
        if not gamma >= 0:
            raise ConfigError(f"loss.options.gamma: FAMO's logit decay must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.min_losses = _per_task_values(min_losses, self.task_names, "min_losses", 0.0)
        self.logits = nn.ParameterDict({n: nn.Parameter(torch.tensor(0.0)) for n in self.task_names})
        # the previous step's losses (NaN = not seen), to measure each task's decrease
        self.register_buffer("previous_losses", torch.full((len(self.task_names),), float("nan")))
        self._step_weights: dict[str, Tensor] = {}

    def _log_gap(self, name: str, loss: Tensor) -> Tensor:
        return torch.log((loss.detach().float() - self.min_losses[name]).clamp_min(0) + EPS)

    def prepare_weights(self, losses: Mapping[str, Tensor]) -> dict[str, Tensor]:
        names = [n for n in self.task_names if n in losses]
        z = torch.softmax(torch.stack([self.logits[n].detach() for n in names]), dim=0)
        gaps = torch.stack([self._log_gap(n, losses[n].reshape(())).exp() for n in names])
        c = (z / gaps).sum()
        return {n: z[i] / (c * gaps[i]) for i, n in enumerate(names)}

    def forward(self, losses: Mapping[str, Tensor]):
        self._check(losses)
        self._step_weights = self.prepare_weights(losses) if losses else {}
        return super().forward(losses)

    def weight(self, name: str, loss: Tensor) -> Tensor:
        w = self._step_weights.get(name)
        if w is None:  # weights() probing, outside a step: the softmax of the logits
            z = torch.softmax(torch.stack(list(self.logits.values())).detach(), dim=0)
            return z[self.task_names.index(name)].to(loss.dtype)
        return w.to(device=loss.device, dtype=loss.dtype)

    def before_backward(
        self, losses: Mapping[str, Tensor], shared_params: Sequence[Tensor], grad_scale: float = 1.0
    ) -> None:
        """Write the logits' gradient from the loss decrease since the previous step."""
        self.famo_logit_step(losses, grad_scale)

    def famo_logit_step(self, losses: Mapping[str, Tensor], grad_scale: float = 1.0) -> dict[str, float]:
        """The logits' FAMO gradient (into ``.grad``); returns ``{task: delta_i}`` used."""
        names = [n for n in self.task_names if n in losses]
        idx = [self.task_names.index(n) for n in names]
        now = torch.stack([self._log_gap(n, losses[n].reshape(())) for n in names]).to(self.previous_losses.device)
        before = self.previous_losses[idx]
        seen = [i for i, v in enumerate(before.tolist()) if v == v]  # not NaN
        self.previous_losses[idx] = now.detach()
        if len(seen) < 2:
            return {}
        used = [names[i] for i in seen]
        delta = (before[seen] - now[seen]).detach()
        params = [self.logits[n] for n in used]
        with torch.enable_grad():
            z = torch.softmax(torch.stack(params), dim=0)
            grads = torch.autograd.grad(z, params, grad_outputs=delta.to(z.dtype))
        for p, g in zip(params, grads):
            g = (g + self.gamma * p.detach()) * grad_scale
            p.grad = g if p.grad is None else p.grad + g
        return {n: float(d) for n, d in zip(used, delta)}

    def extra_report(self, name: str) -> dict[str, float]:
        return {"logit": float(self.logits[name].detach())}

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"
