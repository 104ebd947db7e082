"""Gradient-level multi-task methods behind the weighting interface (PCGrad, MGDA, CAGrad, ...).

A loss weighting decides how much each task's loss counts; a gradient method decides how
the tasks' *gradients* on the shared part of the network are combined into one update:
with the per-task gradients as rows of a Jacobian ``J`` (T x n), the method computes
weights ``w`` from the Gramian ``G = J J^T`` and the shared part receives ``d = J^T w``
instead of the plain sum ``J^T 1`` (the aggregators: :mod:`.aggregators`).

Two modes, option ``mode`` (``loss.options.mode``; not ``on``, which YAML reads as ``true``):

* ``representation`` (default, the usual choice for dense networks): ``J``'s rows are the
  gradients of each task's loss with respect to the shared representation, the tensors the
  heads read: the decoder's output map, and for image-level heads the encoder feature they
  pool (taken as a separate view, so the decoder's path is not counted twice; a dense task's
  row is zero there and an image-level task's row is zero on the map). Cost: one backward
  through each *head* per task (``autograd.grad`` to the representation), then the usual
  single backward through encoder and decoder with ``d`` injected at the representation;
  memory: T copies of the representation (T x B x C x H/4 x W/4 floats).
* ``shared_params``: ``J``'s rows are the gradients of each task's loss with respect to
  every shared parameter (encoder and decoder). Exact "Jacobian descent" on the trunk, but
  it costs one backward through the *whole network* per task (about T + 1 backwards per
  step instead of 1) and T x (number of shared parameters) floats.

How it plugs into the trainer (no method-specific code there):

* ``bind(model)`` (once): remembers the shared parameters, or installs the model's
  ``representation_hook`` that records the representation of each training forward;
* ``forward(losses)``: the losses scaled first by the ``loss_scaling`` weighting (``equal``
  or ``uncertainty``; refused for scale-invariant methods), returning its ``(total, report)``;
* ``before_backward(losses, _, grad_scale)``: computes ``J`` with ``autograd.grad``
  (retaining the graph), the weights, and registers one-shot gradient hooks on the shared
  tensors that replace the summed gradient by ``d`` (times ``grad_scale``, the AMP loss scale
  / accumulation factor, so the scaler unscales it like everything else). The heads keep
  their own task's gradient, so per-head clipping applies unchanged; the uncertainty
  log-variances get their usual gradient from ``total.backward()``.

Under torchrun each rank's losses are the global batch's (see
:func:`hydranet.losses.finish_losses`): in ``shared_params`` mode the per-task gradients are
all-reduced (averaged) before the Gramian, in ``representation`` mode the ranks' Gramians are
summed (the global Jacobian is the ranks' rows side by side); the weights are computed once
and broadcast from rank 0 (PCGrad draws a random order, Nash-MTL keeps state), so every rank
applies the update one process would on the global batch. Non-finite per-task gradients
(an fp16 overflow) skip the aggregation: the plain sum goes through, and the AMP scaler
sees the overflow and skips the step as usual.

State: the loss-scaling weighting's parameters are in ``state_dict`` (checkpointed); PCGrad's
random order comes from torch's generator (checkpointed by the trainer); Nash-MTL's warm start
(its previous weights) is not, so a resumed Nash-MTL run restarts its solver from ones.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal, Mapping, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..errors import ConfigError
from ..schema.sections import PerTaskNumbers
from ..schema.types import Field, Float, Int, Section, Str
from .aggregators import AGGREGATORS, build_aggregator
from .weighting import EqualWeighting, TaskLike, UncertaintyWeighting, Weighting

MODES = ("representation", "shared_params")
LOSS_SCALINGS = {"equal": EqualWeighting, "uncertainty": UncertaintyWeighting}


class GradientAggregation(Weighting):
    """One gradient method (``method``, a name of :data:`.aggregators.AGGREGATORS`).

    Args:
        tasks: the task specs (or names when ``loss_scaling`` is ``equal``).
        method: the aggregator's name.
        mode: ``representation`` | ``shared_params`` (see the module docstring).
        loss_scaling: ``equal`` | ``uncertainty``: the weighting whose weighted losses
            ``w_i L_i`` are the rows' losses (and whose total is reported/back-propagated).
        initial_log_vars, forms: passed to the uncertainty weighting.
        **method_options: the aggregator's own options (e.g. CAGrad's ``c``).
    """

    def __init__(
        self,
        tasks: Iterable[TaskLike],
        method: str,
        mode: str = "representation",
        loss_scaling: str = "equal",
        initial_log_vars: Any = None,
        forms: Optional[Mapping[str, str]] = None,
        **method_options: Any,
    ):
        super().__init__(tasks)
        if method not in AGGREGATORS:
            raise ConfigError(f"loss.weighting: unknown gradient method {method!r}; valid: {', '.join(AGGREGATORS)}")
        entry = AGGREGATORS[method]
        if mode not in MODES:
            raise ConfigError(f"loss.options.mode: {mode!r} is not one of {', '.join(MODES)}")
        if loss_scaling not in LOSS_SCALINGS:
            raise ConfigError(f"loss.options.loss_scaling: {loss_scaling!r} is not one of {', '.join(LOSS_SCALINGS)}")
        if loss_scaling != "equal" and entry.scale_invariant:
            raise ConfigError(
                f"loss.options.loss_scaling: {method} is invariant to the scale of each task's loss, "
                f"so {loss_scaling} scaling would change nothing; leave it at equal"
            )
        if loss_scaling == "equal" and (initial_log_vars is not None or forms):
            raise ConfigError("loss.options: initial_log_vars/forms need loss_scaling: uncertainty")
        unknown = set(method_options) - set(entry.options)
        if unknown:
            raise ConfigError(
                f"loss.options: {method} has no option(s) {sorted(unknown)}; valid: "
                f"{', '.join(['mode', 'loss_scaling', *entry.options])}"
            )
        self.method, self.mode, self.loss_scaling = method, mode, loss_scaling
        self.method_options = {**entry.options, **method_options}
        scaling_cls = LOSS_SCALINGS[loss_scaling]
        scaling_tasks = tasks if loss_scaling == "uncertainty" else self.task_names
        extra = {"initial_log_vars": initial_log_vars, "forms": forms} if loss_scaling == "uncertainty" else {}
        self.scaling = scaling_cls(scaling_tasks, **extra)
        self._weights_of = build_aggregator(method, len(self.task_names), self.method_options)
        self._shared: list[Tensor] = []
        self._rep: list[Tensor] = []
        self._handles: list = []
        self.last_weights: dict[str, float] = {}

    # -- the loss side: whatever the scaling weighting does
    def forward(self, losses: Mapping[str, Tensor]):
        return self.scaling(losses)

    def weight(self, name: str, loss: Tensor) -> Tensor:
        return self.scaling.weight(name, loss)

    def weights(self) -> dict[str, float]:
        """The aggregation's last per-task weights (1 before the first step)."""
        return {n: self.last_weights.get(n, 1.0) for n in self.task_names}

    def sigma2(self) -> dict[str, float]:
        if isinstance(self.scaling, UncertaintyWeighting):
            return self.scaling.sigma2()
        return {}

    def epoch_end(self, mean_losses: Mapping[str, float]):
        return self.scaling.epoch_end(mean_losses)

    # -- the gradient side
    def bind(self, model: nn.Module) -> None:
        """Remember what is shared in ``model`` (a HydraNet): its trunk parameters or its representation."""
        heads = {id(p) for p in model.heads.parameters()}
        if self.mode == "shared_params":
            self._shared = [p for p in model.parameters() if p.requires_grad and id(p) not in heads]
            if not self._shared:
                raise ConfigError(f"loss.weighting: {self.method} on shared_params: the model has no trainable trunk")
        else:
            model.representation_hook = self._record_representation

    def _record_representation(self, shared: Optional[Tensor], global_feature: Optional[Tensor]):
        """Called by HydraNet.forward with what the heads will read (the global feature only when
        image-level heads read it); returns them, the global one as a fresh view."""
        if not torch.is_grad_enabled():
            return shared, global_feature
        global_view = None if global_feature is None else global_feature.view_as(global_feature)
        self._rep = [t for t in (shared, global_view) if t is not None and t.requires_grad]
        return shared, global_view

    def _targets(self) -> list[Tensor]:
        return self._shared if self.mode == "shared_params" else self._rep

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def before_backward(
        self, losses: Mapping[str, Tensor], shared_params: Sequence[Tensor], grad_scale: float = 1.0
    ) -> None:
        self._remove_hooks()
        targets = self._targets()
        names = [n for n in self.task_names if n in losses and losses[n].requires_grad]
        if not targets or len(names) < 2:
            return  # nothing shared in the graph, or one task: the plain gradient is the method's
        rows = []
        for name in names:
            loss = losses[name].reshape(())
            scaled = self.scaling.weight(name, loss).detach() * loss * grad_scale
            grads = torch.autograd.grad(scaled, targets, retain_graph=True, allow_unused=True)
            flat = [(torch.zeros_like(t) if g is None else g).reshape(-1).float() for t, g in zip(targets, grads)]
            rows.append(torch.cat(flat) / grad_scale)
        jac = torch.stack(rows)
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world > 1 and self.mode == "shared_params":
            dist.all_reduce(jac)
            jac /= world
        if not torch.isfinite(jac).all():
            return  # an AMP overflow: let the plain sum through so the scaler skips the step
        gramian = (jac @ jac.T).double()
        if world > 1 and self.mode == "representation":
            gramian /= world * world  # this rank's rows are W x its share of the global gradient
            dist.all_reduce(gramian)
        weights = self._weights_of(gramian).to(jac.dtype).reshape(-1)
        if world > 1:
            dist.broadcast(weights, src=0)
        self.last_weights = {n: float(w) for n, w in zip(names, weights)}
        # representation mode under torchrun: J_r^T w is W x this rank's share of the global update,
        # and DDP's average over the W ranks divides it back
        direction = (weights @ jac) * grad_scale
        self._install(targets, direction)

    def _install(self, targets: list[Tensor], direction: Tensor) -> None:
        """One-shot hooks: each target's gradient in the coming backward becomes its slice of ``direction``."""
        offset = 0
        for t in targets:
            piece = direction[offset : offset + t.numel()].view_as(t).to(t.dtype)
            offset += t.numel()
            self._handles.append(t.register_hook(lambda grad, piece=piece: piece))

    def extra_repr(self) -> str:
        return f"{self.method}, mode={self.mode}, loss_scaling={self.loss_scaling}, options={self.method_options}"


class GradientOptions(Section):
    """``loss.options`` every gradient method takes."""

    mode: Literal["representation", "shared_params"] = Field(
        "representation", description="aggregate gradients of the shared representation or of all shared parameters"
    )
    loss_scaling: Literal["equal", "uncertainty"] = Field(
        "equal", description="the weighting applied to the losses before their gradients are taken"
    )
    initial_log_vars: Optional[PerTaskNumbers] = Field(None, description="loss_scaling uncertainty: initial s")
    forms: Optional[dict[Str, Str]] = Field(None, description="loss_scaling uncertainty: form per task")


class CAGradOptions(GradientOptions):
    """``loss.options`` of ``cagrad``."""

    c: Float = Field(0.4, ge=0, description="radius of the ball around the mean gradient, times its norm")


class NashMTLOptions(GradientOptions):
    """``loss.options`` of ``nash_mtl``."""

    max_norm: Float = Field(1.0, ge=0, description="cap on the update's norm (0: none)")
    update_weights_every: Int = Field(1, ge=1, description="solve for new weights every N steps")
    optim_niter: Int = Field(20, ge=1, description="iterations of the convex-concave procedure")


OPTIONS_MODELS = {"cagrad": CAGradOptions, "nash_mtl": NashMTLOptions}


def gradient_method(name: str) -> type:
    """A ``build_weighting``-compatible class for gradient method ``name``."""

    def __init__(self, tasks, mode="representation", loss_scaling="equal", initial_log_vars=None, forms=None, **opts):
        scaling = {"loss_scaling": loss_scaling, "initial_log_vars": initial_log_vars, "forms": forms}
        GradientAggregation.__init__(self, tasks, name, mode=mode, **scaling, **opts)

    attributes = {"__init__": __init__, "__doc__": name, "options_model": OPTIONS_MODELS.get(name, GradientOptions)}
    return type(f"GradientAggregation_{name}", (GradientAggregation,), attributes)


GRADIENT_METHODS: dict[str, type] = {name: gradient_method(name) for name in AGGREGATORS}
