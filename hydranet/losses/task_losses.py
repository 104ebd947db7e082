"""Per-task losses, averaged over valid elements only.

Two pieces split the work:

* the task's kind (``spec.task_kind.valid(spec, target, present)``) decides *which* target
  elements carry a label (ignore index, depth <= 0 or NaN, zero or NaN normals, NaN
  regression values, samples whose ``present`` flag is False) and which losses apply;
* ``LOSSES[name](pred, target, valid, **options)`` decides *how* to compare prediction and
  target on those elements, and averages over them. Each is written as statistics (sums
  over the valid elements and their count, ``LOSS_FORMS[name]``) and a function of their
  totals, so that :func:`compute_losses` can form the loss of the global batch under
  torchrun by summing the statistics over the ranks (see :func:`finish_losses`).

Every loss function returns ``None`` when no element is valid: "no label" is never a fake
zero, so an unlabelled task adds no loss and sends no gradient to its head. Invalid
elements are removed by boolean indexing *before* any arithmetic, so a NaN target can
never reach the loss value or its gradient.

Shapes (N = batch, C = classes, k = regression outputs):

==============  ====================  ====================  ==========================
kind            prediction            target                valid mask
==============  ====================  ====================  ==========================
segmentation    N x C x H x W logits  N x H x W int64       N x H x W
depth           N x 1 x H x W metres  N x 1 x H x W float   N x 1 x H x W
normals         N x 3 x H x W raw     N x 3 x H x W unit    N x H x W (per pixel)
classification  N x C logits          N int64               N
regression      N x k raw             N x k float           N x k
==============  ====================  ====================  ==========================

``present`` (the data contract's per-sample flag, bool of shape N) is folded into the
valid mask by the kind; ``None`` means every sample is present.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..schema.registry import register_options
from ..schema.types import Field, Float, Section
from ..tasks import TaskSpec

__all__ = [
    "cross_entropy",
    "l1",
    "mse",
    "smooth_l1",
    "berhu",
    "silog",
    "cosine",
    "angular",
    "LOSSES",
    "LOSS_REGISTRY",
    "Loss",
    "register_loss",
    "normalize_target",
    "denormalize_prediction",
    "resolve_loss",
    "task_loss",
    "compute_losses",
    "batch_statistics",
    "finish_losses",
    "LocalReduction",
    "LossForm",
    "LOSS_FORMS",
]

_IGNORE = -100  # sentinel label handed to F.cross_entropy for invalid elements


def valid_normals(target: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N x H x W (per pixel) of an N x 3 x H x W target: all 3 components finite, a non-zero vector."""
    finite = torch.isfinite(target).all(dim=1)
    norm2 = torch.where(torch.isfinite(target), target, torch.zeros_like(target)).pow(2).sum(dim=1)
    return finite & (norm2 > eps * eps)


# --------------------------------------------------------------------------- helpers
def _full_valid(valid: Optional[Tensor], target: Tensor) -> Tensor:
    """Valid mask broadcast to ``target``'s shape, always excluding non-finite targets."""
    ok = torch.isfinite(target) if target.is_floating_point() else torch.ones_like(target, dtype=torch.bool)
    if valid is not None:
        ok = ok & valid.to(device=target.device, dtype=torch.bool).expand_as(target)
    return ok


def _pairs(pred: Tensor, target: Tensor, valid: Optional[Tensor]):
    """(pred[valid], target[valid]) as float32, or None when nothing is valid."""
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape "
            "(dense outputs must be upsampled to the target size by the caller)"
        )
    mask = _full_valid(valid, target)
    if not bool(mask.any()):
        return None
    return pred.float()[mask], target.float()[mask]


# --------------------------------------------------------------------------- losses
# Every loss is written as *statistics* (a 1-D tensor of sums over the valid elements, the
# last one the element count or weight) and a *finish* function of their totals. One
# process evaluates finish(stats); :func:`compute_losses` with a distributed reducer sums
# the statistics over all ranks first, which is what makes multi-process training exact.
def _sum_count(terms: Tensor, count: Optional[Tensor] = None) -> Tensor:
    n = torch.tensor(float(terms.numel()), device=terms.device) if count is None else count.float()
    return torch.stack([terms.sum(), n.to(terms.dtype)])


def _mean(totals: Tensor, **_: Any) -> Tensor:
    return totals[0] / totals[1]


def _cross_entropy_stats(
    pred: Tensor,
    target: Tensor,
    valid: Optional[Tensor] = None,
    *,
    class_weights: Optional[Iterable[float]] = None,
    label_smoothing: float = 0.0,
    **_: Any,
) -> Optional[Tensor]:
    if pred.dim() != target.dim() + 1 or pred.shape[0] != target.shape[0] or pred.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"cross_entropy: logits {tuple(pred.shape)} do not match labels {tuple(target.shape)} "
            "(expected N x C [x H x W] logits and N [x H x W] labels)"
        )
    mask = torch.ones_like(target, dtype=torch.bool) if valid is None else valid.to(target.device).bool()
    if not bool(mask.any()):
        return None
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(list(class_weights), dtype=torch.float32, device=pred.device)
        if weight.numel() != pred.shape[1]:
            raise ValueError(f"cross_entropy: {weight.numel()} class weights for {pred.shape[1]} classes")
    labels = torch.where(mask, target.long(), torch.full_like(target.long(), _IGNORE))
    total = F.cross_entropy(
        pred.float(),
        labels,
        weight=weight,
        ignore_index=_IGNORE,
        label_smoothing=float(label_smoothing),
        reduction="sum",
    )
    count = mask.sum() if weight is None else weight[target.long()[mask]].sum()
    return torch.stack([total, count.to(total.dtype)])


def cross_entropy(
    pred: Tensor,
    target: Tensor,
    valid: Optional[Tensor] = None,
    *,
    class_weights: Optional[Iterable[float]] = None,
    label_smoothing: float = 0.0,
) -> Optional[Tensor]:
    """Cross-entropy for segmentation (N x C x H x W vs N x H x W) or classification (N x C vs N).

    Averaged over valid elements; with ``class_weights`` (C values) it is the weighted mean
    ``sum(w[y] * nll) / sum(w[y])`` over valid elements, as ``torch.nn.functional.cross_entropy``
    defines it. ``label_smoothing`` in [0, 1) mixes the one-hot target with the uniform one.
    """
    stats = _cross_entropy_stats(pred, target, valid, class_weights=class_weights, label_smoothing=label_smoothing)
    return None if stats is None else _mean(stats)


def _l1_stats(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, **_: Any) -> Optional[Tensor]:
    pair = _pairs(pred, target, valid)
    return None if pair is None else _sum_count((pair[0] - pair[1]).abs())


def _mse_stats(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, **_: Any) -> Optional[Tensor]:
    pair = _pairs(pred, target, valid)
    return None if pair is None else _sum_count((pair[0] - pair[1]).pow(2))


def _smooth_l1_stats(
    pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, beta: float = 1.0, **_: Any
) -> Optional[Tensor]:
    pair = _pairs(pred, target, valid)
    return None if pair is None else _sum_count(F.smooth_l1_loss(pair[0], pair[1], beta=float(beta), reduction="none"))


def l1(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Optional[Tensor]:
    """Mean absolute error over valid elements (pred and target of the same shape)."""
    stats = _l1_stats(pred, target, valid)
    return None if stats is None else _mean(stats)


def mse(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Optional[Tensor]:
    """Mean squared error over valid elements."""
    stats = _mse_stats(pred, target, valid)
    return None if stats is None else _mean(stats)


def smooth_l1(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, beta: float = 1.0) -> Optional[Tensor]:
    """Huber-style smooth L1 over valid elements: 0.5 r^2 / beta if |r| < beta else |r| - 0.5 beta."""
    stats = _smooth_l1_stats(pred, target, valid, beta=beta)
    return None if stats is None else _mean(stats)


def _berhu_max(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, **_: Any) -> Tensor:
    """The largest residual over the valid elements (0 when there is none), no gradient."""
    pair = _pairs(pred, target, valid)
    if pair is None:
        return torch.zeros((), device=pred.device)
    return (pair[0] - pair[1]).abs().max().detach()


def _berhu_stats(
    pred: Tensor,
    target: Tensor,
    valid: Optional[Tensor] = None,
    *,
    threshold: float = 0.2,
    max_residual: Optional[Tensor] = None,
    **_: Any,
) -> Optional[Tensor]:
    pair = _pairs(pred, target, valid)
    if pair is None:
        return None
    r = (pair[0] - pair[1]).abs()
    top = r.max() if max_residual is None else max_residual.to(r.device, r.dtype)
    c = (threshold * top).detach()
    c_safe = c.clamp_min(torch.finfo(r.dtype).tiny)
    quad = (r * r + c * c) / (2 * c_safe)
    return _sum_count(torch.where(r <= c, r, quad))


def berhu(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, threshold: float = 0.2) -> Optional[Tensor]:
    """Reverse Huber (berHu, Laina et al. 2016) over valid elements.

    With r = |pred - target| and c = ``threshold`` * max r over the valid elements of the
    batch (treated as a constant, no gradient): loss = r if r <= c, else (r^2 + c^2) / (2c).
    When every residual is 0 then c = 0 and the loss is 0 with a zero gradient (guarded).
    Under torchrun the maximum is taken over the global batch (all ranks).
    """
    stats = _berhu_stats(pred, target, valid, threshold=threshold)
    return None if stats is None else _mean(stats)


def _silog_stats(
    pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, min_depth: float = 1e-3, **_: Any
) -> Optional[Tensor]:
    full = _full_valid(valid, target) & (torch.nan_to_num(target, nan=0.0) > 0)
    pair = _pairs(pred, target, full)
    if pair is None:
        return None
    d = pair[0].abs().clamp_min(min_depth).log() - pair[1].log()
    return torch.stack([d.sum(), d.pow(2).sum(), torch.tensor(float(d.numel()), device=d.device)])


def _silog_finish(totals: Tensor, *, lam: float = 0.85, scale: float = 1.0, **_: Any) -> Tensor:
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"silog: lam must be in [0, 1], got {lam}")
    n = totals[2]
    var = (totals[1] / n - lam * (totals[0] / n).pow(2)).clamp_min(0.0)
    return scale * torch.sqrt(var + 1e-12)


def silog(
    pred: Tensor,
    target: Tensor,
    valid: Optional[Tensor] = None,
    *,
    lam: float = 0.85,
    scale: float = 1.0,
    min_depth: float = 1e-3,
) -> Optional[Tensor]:
    """Scale-invariant log loss (Eigen et al. 2014), in its square-root form.

    d = log(max(|pred|, min_depth)) - log(target) over valid elements with target > 0;
    loss = scale * sqrt(mean(d^2) - lam * mean(d)^2).
    ``lam`` = 0 gives the log-RMSE, 1 is fully scale invariant; 0.85 (the default) is the value
    of BTS/AdaBins, which also use ``scale`` = 10 (here 1). The prediction is the head's raw
    value: its absolute value, clamped at ``min_depth``, is used inside the log.
    Under torchrun the means are over the global batch (sums of d and d^2 all-reduced).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"silog: lam must be in [0, 1], got {lam}")
    stats = _silog_stats(pred, target, valid, min_depth=min_depth)
    return None if stats is None else _silog_finish(stats, lam=lam, scale=scale)


def _normal_pairs(pred: Tensor, target: Tensor, valid: Optional[Tensor]):
    if pred.shape != target.shape or pred.dim() < 2 or pred.shape[1] != 3:
        raise ValueError(
            f"normals: prediction {tuple(pred.shape)} and target {tuple(target.shape)} must both be N x 3 [x H x W]"
        )
    mask = valid_normals(target) if valid is None else valid_normals(target) & _pixel_mask(valid, target)
    if not bool(mask.any()):
        return None
    p = pred.float().movedim(1, -1)[mask]  # M x 3
    t = target.float().movedim(1, -1)[mask]
    return F.normalize(p, dim=-1, eps=1e-12), F.normalize(t, dim=-1, eps=1e-12)


def _pixel_mask(valid: Tensor, target: Tensor) -> Tensor:
    valid = valid.to(target.device).bool()
    if valid.dim() == target.dim():  # N x 1 x H x W -> N x H x W
        valid = valid.squeeze(1)
    return valid.expand(target.shape[0], *target.shape[2:])


def _cosine_stats(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, **_: Any) -> Optional[Tensor]:
    pair = _normal_pairs(pred, target, valid)
    return None if pair is None else _sum_count(1.0 - (pair[0] * pair[1]).sum(-1))


def _angular_stats(
    pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, eps: float = 1e-7, **_: Any
) -> Optional[Tensor]:
    pair = _normal_pairs(pred, target, valid)
    if pair is None:
        return None
    return _sum_count(torch.acos((pair[0] * pair[1]).sum(-1).clamp(-1.0 + eps, 1.0 - eps)))


def cosine(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Optional[Tensor]:
    """Mean of 1 - cos(angle) between normalised prediction and target over valid pixels.

    pred: N x 3 x H x W raw vectors (normalised here); target: unit vectors, a zero or
    NaN vector marks an invalid pixel; valid: optional N x H x W (or N x 1 x H x W) mask.
    """
    stats = _cosine_stats(pred, target, valid)
    return None if stats is None else _mean(stats)


def angular(pred: Tensor, target: Tensor, valid: Optional[Tensor] = None, *, eps: float = 1e-7) -> Optional[Tensor]:
    """Mean angle in radians, acos(cos), over valid pixels (shapes as :func:`cosine`).

    cos is clamped to [-1 + eps, 1 - eps] so the gradient of acos stays finite; a perfect
    prediction therefore reads about sqrt(2 eps) rad (5e-4 for the default), not 0.
    """
    stats = _angular_stats(pred, target, valid, eps=eps)
    return None if stats is None else _mean(stats)


class LossForm(NamedTuple):
    """A loss as statistics over valid elements and a function of their totals.

    ``stats(pred, target, valid, **options)`` -> 1-D tensor of ``size`` sums (last: the count
    or weight of the valid elements; None when nothing is valid); ``finish(totals, **options)``
    -> the scalar loss; ``batch_max`` (berHu) -> a batch maximum the statistics depend on,
    handed to ``stats`` as ``max_residual``.
    """

    stats: Callable[..., Optional[Tensor]]
    size: int
    finish: Callable[..., Tensor] = _mean
    batch_max: Optional[Callable[..., Tensor]] = None


# --------------------------------------------------------------------------- option schemas
class NoLossOptions(Section):
    """This loss takes no options."""


NonNegative = Annotated[Float, Field(ge=0)]


class CrossEntropyOptions(Section):
    """``loss_options`` of cross_entropy."""

    class_weights: Optional[list[NonNegative]] = Field(
        None, description="one weight >= 0 per class (weighted mean over valid elements); null: all 1"
    )
    label_smoothing: Float = Field(0.0, ge=0, lt=1, description="mix of the one-hot target with the uniform one")


class SmoothL1Options(Section):
    """``loss_options`` of smooth_l1."""

    beta: Float = Field(1.0, gt=0, description="where the loss turns from quadratic to linear")


class BerhuOptions(Section):
    """``loss_options`` of berhu."""

    threshold: Float = Field(0.2, gt=0, description="c = threshold x the batch's largest residual")


class SilogOptions(Section):
    """``loss_options`` of silog (``lambda`` is accepted for ``lam``)."""

    lam: Float = Field(0.85, ge=0, le=1, alias="lambda", description="0: log-RMSE, 1: fully scale invariant")
    scale: Float = Field(1.0, gt=0, description="factor of the loss (BTS/AdaBins use 10)")
    min_depth: Float = Field(1e-3, gt=0, description="predictions are clamped to at least this inside the log")


class AngularOptions(Section):
    """``loss_options`` of angular."""

    eps: Float = Field(1e-7, gt=0, lt=1, description="clamp of the cosine away from +-1 (finite gradients)")


# --------------------------------------------------------------------------- the loss registry
class Loss(NamedTuple):
    """One loss: its function, its form as statistics (:class:`LossForm`) and the schema of its
    ``loss_options`` (a :class:`~hydranet.schema.Section`)."""

    function: Callable[..., Optional[Tensor]]
    form: LossForm
    options: type = NoLossOptions


#: The losses, by name: each entry declares its function, its statistics and its options.
LOSS_REGISTRY: dict[str, Loss] = {}


def register_loss(name: str, function: Callable, form: LossForm, options: type = NoLossOptions) -> Loss:
    """Make a loss available to task configs under ``name`` (its options schema included)."""
    LOSS_REGISTRY[name] = Loss(function, form, options)
    register_options("loss", name, options)
    return LOSS_REGISTRY[name]


class _RegistryView(Mapping):
    """A read-only view of one field of :data:`LOSS_REGISTRY` (``LOSSES``, ``LOSS_FORMS``)."""

    def __init__(self, field: str):
        self._field = field

    def __getitem__(self, name: str):
        return getattr(LOSS_REGISTRY[name], self._field)

    def __iter__(self):
        return iter(LOSS_REGISTRY)

    def __len__(self) -> int:
        return len(LOSS_REGISTRY)


LOSSES: Mapping[str, Callable[..., Optional[Tensor]]] = _RegistryView("function")  # name -> loss function
LOSS_FORMS: Mapping[str, LossForm] = _RegistryView("form")  # name -> its statistics and their finish

register_loss("cross_entropy", cross_entropy, LossForm(_cross_entropy_stats, 2), CrossEntropyOptions)
register_loss("l1", l1, LossForm(_l1_stats, 2))
register_loss("mse", mse, LossForm(_mse_stats, 2))
register_loss("smooth_l1", smooth_l1, LossForm(_smooth_l1_stats, 2), SmoothL1Options)
register_loss("berhu", berhu, LossForm(_berhu_stats, 2, batch_max=_berhu_max), BerhuOptions)
register_loss("silog", silog, LossForm(_silog_stats, 3, _silog_finish), SilogOptions)
register_loss("cosine", cosine, LossForm(_cosine_stats, 2))
register_loss("angular", angular, LossForm(_angular_stats, 2), AngularOptions)


# --------------------------------------------------------------------------- normalisation
def normalize_target(spec: TaskSpec, y: Tensor) -> Tensor:
    """Target in the head's units (regression: z = (y - mean) / std with ``options.target_mean``
    / ``target_std``; unchanged for other kinds and without options). NaN stays NaN."""
    return spec.task_kind.normalize(spec, y)


def denormalize_prediction(spec: TaskSpec, z: Tensor) -> Tensor:
    """Prediction in the target's units (inverse of :func:`normalize_target`)."""
    return spec.task_kind.denormalize(spec, z)


# --------------------------------------------------------------------------- per task
def resolve_loss(spec: TaskSpec) -> tuple[Callable[..., Optional[Tensor]], dict]:
    """The loss function of a task and its keyword options, validated.

    Raises:
        ConfigError: unknown loss name, a loss the task kind does not accept, or an unknown
            option; the message lists the valid choices.
    """
    name = spec.loss_name
    allowed = spec.task_kind.losses
    if name not in LOSSES:
        raise ConfigError(
            f"task {spec.name!r}: unknown loss {name!r}; valid losses for kind {spec.kind!r}: {', '.join(allowed)}"
        )
    if name not in allowed:
        raise ConfigError(
            f"task {spec.name!r}: loss {name!r} does not apply to kind {spec.kind!r}; valid: {', '.join(allowed)}"
        )
    fn = LOSSES[name]
    options = spec.loss_options.model_dump(exclude_unset=True)
    return fn, options


def _task_inputs(spec: TaskSpec, target: Tensor, present: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """The target in the head's units and its valid mask (both decided by the task's kind)."""
    kind = spec.task_kind
    target = kind.loss_target(spec, target)
    return target, kind.valid(spec, target, present)


def task_loss(spec: TaskSpec, pred: Tensor, target: Tensor, present: Optional[Tensor] = None) -> Optional[Tensor]:
    """Scalar loss of one task over its valid elements, or ``None`` if the batch has no label for it.

    Args:
        spec: the task (its kind decides the valid mask, its ``loss`` / ``loss_options`` the loss).
        pred: the model's output for the task (shapes in the module docstring).
        target: the batch's target for the task (depth may also be N x H x W).
        present: bool of shape N, the samples that carry this label (None = all).
    """
    fn, options = resolve_loss(spec)
    target, valid = _task_inputs(spec, target, present)
    if not bool(valid.any()):
        return None
    return fn(pred, target, valid, **options)


def _as_specs(tasks: Union[Iterable[TaskSpec], Mapping[str, TaskSpec]]) -> list[TaskSpec]:
    return list(tasks.values()) if isinstance(tasks, Mapping) else list(tasks)


class LocalReduction:
    """How loss statistics become global: here, one process (the identity).

    A distributed implementation (``hydranet.training.distributed.RankReduction``) sums or
    takes the maximum over all ranks; ``world_size`` is the number of ranks whose gradients
    DistributedDataParallel averages.
    """

    world_size = 1

    def sum(self, t: Tensor) -> Tensor:
        return t

    def max(self, t: Tensor) -> Tensor:
        return t


def _batch_inputs(spec: TaskSpec, outputs: Mapping[str, Tensor], targets: Mapping, present: Mapping):
    """``(pred, target, valid)`` of one task in a batch, or None when it holds no valid label."""
    if spec.name not in targets:
        return None
    flags = present.get(spec.name)
    if flags is not None and not bool(torch.as_tensor(flags).any()):
        return None
    if spec.name not in outputs:
        raise KeyError(
            f"task {spec.name!r} has targets in the batch but no model output (outputs: {', '.join(outputs)})"
        )
    target, valid = _task_inputs(spec, targets[spec.name], flags)
    if not bool(valid.any()):
        return None
    return outputs[spec.name], target, valid


def _no_stats(pred: Optional[Tensor], size: int) -> Tensor:
    """Zero statistics; tied to ``pred``'s graph (zero gradient, even for a NaN prediction)."""
    if pred is None:
        return torch.zeros(size)
    anchor = torch.where(torch.zeros((), dtype=torch.bool, device=pred.device), pred.reshape(-1)[:1].float(), 0.0)
    return torch.zeros(size, device=pred.device) + anchor.sum()


def batch_statistics(
    outputs: Mapping[str, Tensor],
    batch: Mapping[str, Any],
    tasks: Union[Iterable[TaskSpec], Mapping[str, TaskSpec]],
    reduction: Optional[LocalReduction] = None,
) -> dict[str, Tensor]:
    """``{task: loss statistics of this batch}`` for every task (zeros where it has no label).

    The statistics are sums over this process's valid elements (see :class:`LossForm`); with
    a distributed ``reduction`` berHu's threshold already uses the maximum over all ranks.
    """
    reduction = reduction or LocalReduction()
    targets = batch.get("targets", {})
    present = batch.get("present", {}) or {}
    specs = _as_specs(tasks)
    inputs = {spec.name: _batch_inputs(spec, outputs, targets, present) for spec in specs}
    forms = {spec.name: LOSS_FORMS[spec.loss_name] for spec in specs}
    options = {spec.name: resolve_loss(spec)[1] for spec in specs}
    maxima = [spec.name for spec in specs if forms[spec.name].batch_max is not None]
    if maxima:
        local = [forms[n].batch_max(*inputs[n], **options[n]) if inputs[n] else None for n in maxima]
        device = next((m.device for m in local if m is not None), None) or _device_of(outputs)
        stacked = torch.stack([torch.zeros((), device=device) if m is None else m.float().to(device) for m in local])
        for name, value in zip(maxima, reduction.max(stacked)):
            options[name] = {**options[name], "max_residual": value}
    stats = {}
    for spec in specs:
        form, found = forms[spec.name], inputs[spec.name]
        value = form.stats(*found, **options[spec.name]) if found else None
        stats[spec.name] = _no_stats(outputs.get(spec.name), form.size) if value is None else value
    return stats


def _device_of(outputs: Mapping[str, Tensor]) -> torch.device:
    return next(iter(outputs.values())).device if outputs else torch.device("cpu")


def finish_losses(
    stats: Mapping[str, Tensor],
    tasks: Union[Iterable[TaskSpec], Mapping[str, TaskSpec]],
    reduction: Optional[LocalReduction] = None,
) -> dict[str, Tensor]:
    """Losses from per-task statistics: summed over ranks, tasks with no valid element left out.

    With one process this is ``finish(stats)``, the loss of the batch. With ``W`` ranks the
    statistics are summed over ranks (one collective for all tasks) into totals ``T`` and
    each rank returns ``finish(T + W * (s - s.detach()))`` for its local statistics ``s``:
    the *value* is the loss of the global batch, identical on every rank, and the *gradient*
    with respect to this rank's predictions is ``W`` times that of the global loss. Since
    DistributedDataParallel averages gradients over the ``W`` ranks, every parameter gets
    exactly the gradient one process would compute on the global batch, also for losses
    that are not plain means (silog's sums of d and d^2; berHu's threshold comes from the
    global maximum). A weighting applied to these values (e.g. ``exp(-s) * L + s``) sees the
    same L on every rank, so its own parameters' gradients agree across ranks too. A task
    counts as present when any rank has a valid element; ranks without one contribute zero
    statistics tied to their prediction, so every rank back-propagates the same terms.
    """
    reduction = reduction or LocalReduction()
    specs = _as_specs(tasks)
    world = int(reduction.world_size)
    if world > 1:
        flat = torch.cat([stats[spec.name].detach().reshape(-1) for spec in specs])
        totals = list(reduction.sum(flat).split([stats[spec.name].numel() for spec in specs]))
    else:
        totals = [stats[spec.name].detach() for spec in specs]
    losses: dict[str, Tensor] = {}
    for spec, total in zip(specs, totals):
        if not float(total[-1]) > 0:
            continue
        local = stats[spec.name]
        value = local if world == 1 else total.to(local.dtype) + world * (local - local.detach())
        losses[spec.name] = LOSS_FORMS[spec.loss_name].finish(value, **resolve_loss(spec)[1])
    return losses


def compute_losses(
    outputs: Mapping[str, Tensor],
    batch: Mapping[str, Any],
    tasks: Union[Iterable[TaskSpec], Mapping[str, TaskSpec]],
    reduction: Optional[LocalReduction] = None,
) -> dict[str, Tensor]:
    """``{task name: scalar loss}`` for the tasks that have at least one label in ``batch``.

    ``batch`` follows the data contract: ``batch["targets"][name]`` and (optionally)
    ``batch["present"][name]``, a bool per sample. A task with no target, or whose targets
    are all invalid, is left out of the dict (no loss, no gradient to its head).
    ``reduction``: under torchrun, the losses of the global batch (see :func:`finish_losses`).

    Raises:
        KeyError: a task has labels in the batch but the model produced no output for it.
    """
    return finish_losses(batch_statistics(outputs, batch, tasks, reduction), tasks, reduction)
