"""Multi-task loss weighting: ``weighting(losses) -> (total, report)``.

Every strategy is a small ``nn.Module`` subclass of :class:`Weighting`. It is called with
``{task name: scalar loss}`` holding only the tasks that have labels in the batch, and it
returns the total loss to back-propagate and a report for logging. It never calls
``backward`` itself, so AMP loss scaling and gradient clipping see the total.

Trainer recipe (all strategies; the trainer has no strategy-specific code)::

    weighting = build_weighting(name, tasks, **options).to(device)
    weighting.check_distributed(world_size)     # GradNorm refuses to run under torchrun
    optimizer = torch.optim.AdamW(
        [{"params": model.parameters()}, weighting_param_group(weighting, lr=1e-2)], lr=1e-3)
    for batch in loader:
        losses = compute_losses(model(batch["image"]), batch, tasks)
        total, report = weighting(losses)
        if total is None:                       # no task has a label in this batch
            continue
        optimizer.zero_grad(set_to_none=True)   # set_to_none matters, see below
        weighting.before_backward(losses, shared_params)     # GradNorm: its weights' gradients
        total.backward()
        clip_head_gradients(model.heads, max_norm)           # optional
        optimizer.step()
    # at the end of each epoch (DWA uses it, the others ignore it):
    weighting.epoch_end({name: mean unweighted training loss of the epoch})

Absent tasks: a task missing from ``losses`` adds nothing to the total, and every learnable
parameter of a strategy is a separate scalar per task, so an absent task's parameter is not
in the graph and its ``.grad`` stays ``None`` after ``zero_grad(set_to_none=True)``. Torch
optimisers skip parameters whose ``.grad`` is ``None``, so Adam's momentum cannot move it.
(With ``zero_grad(set_to_none=False)`` the grad would be a zero tensor and Adam would still
move the parameter on its momentum: do not do that.)

Strategies (``build_weighting`` names):

* ``equal``: every weight 1.
* ``fixed``: ``weights={task: w}`` (default 1 for unnamed tasks).
* ``uncertainty``: Kendall, Gal and Cipolla, "Multi-task learning using uncertainty to weigh
  losses", CVPR 2018. See :class:`UncertaintyWeighting` for the per-kind forms.
* ``gradnorm``: Chen et al., "GradNorm", ICML 2018. See :class:`GradNormWeighting`.
* ``dwa``: Liu, Johns and Davison, "End-to-end multi-task learning with attention" (Dynamic
  Weight Average), CVPR 2019. See :class:`DWAWeighting`.

State: UW log-variances and GradNorm weights are parameters, GradNorm's initial losses and
DWA's loss history are buffers; all of them are in ``weighting.state_dict()``, which the
checkpoint must store (else a resume resets them).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..schema.errors import unknown_key_error, validate
from ..schema.registry import register_options
from ..schema.sections import PerTaskLogVariances, PerTaskNumbers
from ..schema.types import Field, Float, Section, Str
from ..tasks import KINDS, TaskSpec, parse_task

__all__ = [
    "Weighting",
    "EqualWeighting",
    "FixedWeighting",
    "UncertaintyWeighting",
    "GradNormWeighting",
    "DWAWeighting",
    "STRATEGIES",
    "UW_FORMS",
    "build_weighting",
    "weighting_param_group",
]

TaskLike = Union[TaskSpec, Mapping[str, Any], str]


def _parse_tasks(tasks: Iterable[TaskLike]) -> tuple[tuple[str, ...], dict[str, Optional[str]]]:
    """Task names (in order) and kinds (None when only a name was given)."""
    if isinstance(tasks, Mapping):
        tasks = list(tasks.values())
    names, kinds = [], {}
    for i, t in enumerate(tasks):
        if isinstance(t, str):
            name, kind = t, None
        else:
            spec = parse_task(t, f"tasks[{i}]")
            name, kind = spec.name, spec.kind
        if name in kinds:
            raise ConfigError(f"weighting: duplicate task name {name!r}")
        names.append(name)
        kinds[name] = kind
    if not names:
        raise ConfigError("weighting: needs at least one task")
    return tuple(names), kinds


def _per_task_values(value: Any, names: Sequence[str], what: str, default: float) -> dict[str, float]:
    """Per-task numbers from a mapping, a list in task order, a number, or a string.

    Strings: ``"0,0.5"`` (task order) or ``"segm=1,depth=0.1"`` (by name).
    """
    if value is None:
        return {n: float(default) for n in names}
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if parts and all("=" in p for p in parts):
            value = {k.strip(): v for k, v in (p.split("=", 1) for p in parts)}
        else:
            value = parts
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {n: float(value) for n in names}
    try:
        if isinstance(value, Mapping):
            unknown = set(value) - set(names)
            if unknown:
                raise ConfigError(
                    f"weighting: {what} names unknown task(s) {sorted(unknown)}; tasks: {', '.join(names)}"
                )
            return {n: float(value.get(n, default)) for n in names}
        value = list(value)
        if len(value) != len(names):
            raise ConfigError(f"weighting: {what} has {len(value)} values for {len(names)} tasks ({', '.join(names)})")
        return {n: float(v) for n, v in zip(names, value)}
    except (TypeError, ValueError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"weighting: {what} must be numbers, got {value!r}") from err


class NoWeightingOptions(Section):
    """This weighting takes no options."""


class FixedOptions(Section):
    """``loss.options`` of ``fixed``."""

    weights: Optional[PerTaskNumbers] = Field(None, description="weight >= 0 per task (unnamed tasks: default)")
    default: Float = Field(1.0, ge=0, description="weight of the tasks that weights does not name")


class UncertaintyOptions(Section):
    """``loss.options`` of ``uncertainty`` (``loss.initial_log_vars`` is the same as its option)."""

    initial_log_vars: Optional[PerTaskLogVariances] = Field(
        None, description="initial log-variance s = log sigma^2 per task, within +-30 (null: 0)"
    )
    forms: Optional[dict[Str, Str]] = Field(
        None, description="{task: 'regression' | 'classification' | a kind} overriding the kind's form"
    )


class GradNormOptions(Section):
    """``loss.options`` of ``gradnorm``."""

    alpha: Float = Field(1.5, ge=0, description="asymmetry: how strongly slow tasks are pushed")
    min_weight: Float = Field(1e-4, gt=0, description="floor of every weight")


class DWAOptions(Section):
    """``loss.options`` of ``dwa``."""

    temperature: Float = Field(2.0, gt=0, description="softmax temperature of the loss-ratio weights")


class Weighting(nn.Module):
    """Base class: combines ``{task: scalar loss}`` into ``(total, report)``.

    Subclasses define :meth:`weight` (the effective weight of a present task, a tensor that
    may carry gradient) and optionally :meth:`regularizer` (a term added per present task)
    and :meth:`extra_report`.

    ``forward(losses)`` returns:

    * ``total``: ``sum_i weight_i * L_i + regularizer_i`` over the tasks present in ``losses``,
      or ``None`` when ``losses`` is empty (no labels at all: skip the step);
    * ``report``: ``{task: {"loss": raw L_i, "weight": weight_i, "weighted": weight_i * L_i, ...}}``
      as Python floats, present tasks only.
    """

    def __init__(self, tasks: Iterable[TaskLike]):
        super().__init__()
        self.task_names, self.task_kinds = _parse_tasks(tasks)

    # -- hooks for subclasses
    def weight(self, name: str, loss: Tensor) -> Tensor:
        raise NotImplementedError

    def regularizer(self, name: str) -> Optional[Tensor]:
        return None

    def extra_report(self, name: str) -> dict[str, float]:
        return {}

    def prepare(self) -> None:
        """Called once at the start of each forward (e.g. to renormalise weights)."""

    # -- hooks for the trainer (no-ops here)
    def bind(self, model: nn.Module) -> None:
        """Called once with the (unwrapped) model before training; gradient methods find what is shared."""

    #: True for a strategy that needs one process's own per-task gradients (GradNorm).
    single_process: bool = False

    def check_distributed(self, world_size: int) -> None:
        """Raise ConfigError when the strategy cannot run on ``world_size`` processes.

        The others are exact under torchrun: the losses they see are the global batch's
        (see :func:`hydranet.losses.finish_losses`), identical on every rank.
        """
        if self.single_process and world_size > 1:
            raise ConfigError(
                f"loss.weighting: {type(self).__name__} needs per-task gradients of one "
                f"process; run it without torchrun ({world_size} processes here)"
            )

    def before_backward(
        self, losses: Mapping[str, Tensor], shared_params: Sequence[Tensor], grad_scale: float = 1.0
    ) -> None:
        """Called after the forward, before ``total.backward()``, with the step's losses.

        ``shared_params``: the last shared layer's tensors; ``grad_scale``: the factor the
        total is multiplied by before backward (AMP loss scale / accumulation), so that
        gradients written here are scaled like the rest.
        """

    def epoch_end(self, mean_losses: Mapping[str, float]) -> Optional[dict]:
        """Called after each training epoch with ``{task: mean unweighted loss}`` of the epoch."""
        return None

    # -- shared logic
    def _check(self, losses: Mapping[str, Tensor]) -> None:
        unknown = set(losses) - set(self.task_names)
        if unknown:
            raise KeyError(
                f"weighting: losses for unknown task(s) {sorted(unknown)}; known: {', '.join(self.task_names)}"
            )
        for name, value in losses.items():
            if not isinstance(value, Tensor) or value.numel() != 1:
                raise ValueError(f"weighting: the loss of {name!r} must be a scalar tensor")

    def forward(self, losses: Mapping[str, Tensor]):
        self._check(losses)
        if not losses:
            return None, {}
        self.prepare()
        total: Optional[Tensor] = None
        report: dict[str, dict[str, float]] = {}
        for name in self.task_names:
            if name not in losses:
                continue
            loss = losses[name].reshape(())
            w = self.weight(name, loss)
            weighted = w * loss
            term = weighted
            reg = self.regularizer(name)
            if reg is not None:
                term = term + reg
            total = term if total is None else total + term
            entry = {"loss": float(loss.detach()), "weight": float(w.detach()), "weighted": float(weighted.detach())}
            if reg is not None:
                entry["regularizer"] = float(reg.detach())
            entry.update(self.extra_report(name))
            report[name] = entry
        return total, report

    @torch.no_grad()
    def weights(self) -> dict[str, float]:
        """The current effective weight of every task (for logging)."""
        self.prepare()
        out = {}
        for name in self.task_names:
            one = self._probe_loss()
            out[name] = float(self.weight(name, one))
        return out

    def _probe_loss(self) -> Tensor:
        for t in list(self.parameters()) + list(self.buffers()):
            return torch.ones((), device=t.device)
        return torch.ones(())

    def extra_repr(self) -> str:
        return "tasks=" + ", ".join(self.task_names)


class EqualWeighting(Weighting):
    """Plain sum of the task losses (every weight 1)."""

    options_model = NoWeightingOptions

    def weight(self, name: str, loss: Tensor) -> Tensor:
        return torch.ones((), dtype=loss.dtype, device=loss.device)


class FixedWeighting(Weighting):
    """Constant weights: ``weights={task: w}`` (mapping, list in task order, or "a=1,b=0.1").

    Tasks not named get ``default`` (1). Weights must be >= 0.
    """

    options_model = FixedOptions

    def __init__(self, tasks: Iterable[TaskLike], weights: Any = None, default: float = 1.0):
        super().__init__(tasks)
        self.fixed = _per_task_values(weights, self.task_names, "weights", default)
        bad = {k: v for k, v in self.fixed.items() if not (v >= 0 and math.isfinite(v))}
        if bad:
            raise ConfigError(f"weighting: fixed weights must be finite and >= 0, got {bad}")

    def weight(self, name: str, loss: Tensor) -> Tensor:
        return torch.tensor(self.fixed[name], dtype=loss.dtype, device=loss.device)

    def extra_repr(self) -> str:
        return f"weights={self.fixed}"


# Uncertainty weighting forms: L_total_i = factor * exp(-s_i) * L_i + 0.5 * s_i, s_i = log sigma_i^2.
UW_FORMS = {
    # 1/(2 sigma^2) L + log sigma: Gaussian likelihood (L1/L2-type losses); optimum sigma^2 = L.
    "regression": 0.5,
    # 1/sigma^2 L + log sigma: scaled softmax likelihood (cross-entropy); optimum sigma^2 = 2 L.
    "classification": 1.0,
}


class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla, CVPR 2018).

    One learnt scalar per task, s_i = log sigma_i^2 (a separate ``nn.Parameter`` each, in
    ``self.log_vars[task]``). Per present task the total gets

    ==============================  =============================  ==========================
    task kind                       term                           optimum for a constant L
    ==============================  =============================  ==========================
    depth, normals, regression      0.5 * exp(-s) * L + 0.5 * s    sigma^2 = exp(s) = L
    segmentation, classification    exp(-s) * L + 0.5 * s          sigma^2 = 2 L
    ==============================  =============================  ==========================

    i.e. 1/(2 sigma^2) L + log sigma and 1/sigma^2 L + log sigma. The effective weight is
    0.5 exp(-s) or exp(-s); the total may be negative (losses below sigma^2): that is
    expected, do not clamp it. Learning s rather than sigma keeps it unconstrained and stable.

    Args:
        tasks: TaskSpecs (or task mappings); plain names need ``forms``.
        initial_log_vars: initial s per task: a list or "0,0,0" string in task order, a
            mapping by name, or one number (default 0, i.e. sigma^2 = 1).
        forms: optional ``{task: "regression" | "classification" | kind}`` overriding the
            kind's form.

    The log-variances need their own optimiser group without weight decay and with a
    learning rate that lets them travel about |log L| over the run (Adam moves each by
    at most ~lr per step): see :func:`weighting_param_group`.
    """

    options_model = UncertaintyOptions

    def __init__(
        self, tasks: Iterable[TaskLike], initial_log_vars: Any = None, forms: Optional[Mapping[str, str]] = None
    ):
        super().__init__(tasks)
        forms = dict(forms or {})
        unknown = set(forms) - set(self.task_names)
        if unknown:
            raise ConfigError(f"weighting: forms names unknown task(s) {sorted(unknown)}")
        self.forms: dict[str, str] = {}
        for name in self.task_names:
            form = forms.get(name) or self.task_kinds[name]
            if form is None:
                raise ConfigError(
                    f"weighting: uncertainty needs the kind of task {name!r}: pass task specs "
                    "or forms={task: 'regression'|'classification'}"
                )
            if form in KINDS:
                form = KINDS[form].uw_form
            if form not in UW_FORMS:
                raise ConfigError(
                    f"weighting: unknown uncertainty form {form!r} for {name!r}; "
                    f"valid: {', '.join(UW_FORMS)} (or a task kind)"
                )
            self.forms[name] = form
        init = _per_task_values(initial_log_vars, self.task_names, "initial_log_vars", 0.0)
        self.log_vars = nn.ParameterDict(
            {n: nn.Parameter(torch.tensor(init[n], dtype=torch.float32)) for n in self.task_names}
        )

    def weight(self, name: str, loss: Tensor) -> Tensor:
        return UW_FORMS[self.forms[name]] * torch.exp(-self.log_vars[name])

    def regularizer(self, name: str) -> Tensor:
        return 0.5 * self.log_vars[name]

    def extra_report(self, name: str) -> dict[str, float]:
        s = self.log_vars[name].detach()
        return {"log_var": float(s), "sigma2": float(torch.exp(s))}  # inf, not OverflowError, if s diverged

    def sigma2(self) -> dict[str, float]:
        """Current sigma_i^2 = exp(s_i) per task."""
        return {n: float(torch.exp(p.detach())) for n, p in self.log_vars.items()}

    def extra_repr(self) -> str:
        return "forms=" + ", ".join(f"{n}:{f}" for n, f in self.forms.items())


class GradNormWeighting(Weighting):
    """GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, ICML 2018).

    Learnable weights w_i > 0 (one ``nn.Parameter`` per task in ``self.task_weights``), kept
    positive and renormalised to sum to the number of tasks before every use. The forward
    uses them *detached*, so ``total.backward()`` does not touch them; they are trained by
    the GradNorm loss through an explicit hook the trainer calls each step::

        optimizer.zero_grad(set_to_none=True)
        total, report = weighting(losses)
        weighting.before_backward(losses, shared_params)   # gradnorm_step: .grad of the weights
        total.backward()
        optimizer.step()                                 # the weights are in the optimiser

    ``gradnorm_step(losses, shared_params)``: for each present task, G_i = w_i * ||d L_i /
    d W|| with W = ``shared_params`` (name them: the paper uses the last shared layer; every
    extra tensor is one more ``autograd.grad`` pass over it); L~_i = L_i / L_i(0) where
    L_i(0) is the task's own first loss seen by ``gradnorm_step`` (a buffer, so it survives
    resume); r_i = L~_i / mean(L~); target_i = mean(G) * r_i ** alpha, detached;
    L_grad = sum_i |G_i - target_i|, whose gradient is written into ``w_i.grad``.
    It must run before ``total.backward()`` (it needs the graph; it uses
    ``retain_graph=True`` and does not populate the shared parameters' ``.grad``); the
    trainer calls it through :meth:`before_backward`. Single process only (per-task
    gradient norms of one rank are not those of the global batch).
    With AMP's GradScaler pass ``grad_scale=scaler.get_scale()`` so that unscaling restores
    the true gradient of the weights.
    """

    options_model = GradNormOptions

    single_process = True

    def __init__(self, tasks: Iterable[TaskLike], alpha: float = 1.5, min_weight: float = 1e-4):
        super().__init__(tasks)
        if alpha < 0:
            raise ConfigError(f"weighting: gradnorm alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.min_weight = float(min_weight)
        self.task_weights = nn.ParameterDict({n: nn.Parameter(torch.tensor(1.0)) for n in self.task_names})
        self.register_buffer("initial_losses", torch.full((len(self.task_names),), float("nan")))
        self.last_gradnorm_loss: Optional[float] = None

    @torch.no_grad()
    def prepare(self) -> None:
        params = list(self.task_weights.values())
        for p in params:
            p.clamp_(min=self.min_weight)
        total = sum(p for p in params)
        for p in params:
            p.mul_(len(params) / total)

    def weight(self, name: str, loss: Tensor) -> Tensor:
        # a copy: the in-place renormalisation must not modify a tensor saved for backward
        return self.task_weights[name].detach().clone().to(loss.dtype)

    def before_backward(
        self, losses: Mapping[str, Tensor], shared_params: Sequence[Tensor], grad_scale: float = 1.0
    ) -> None:
        self.gradnorm_step(losses, shared_params, grad_scale=grad_scale)

    def gradnorm_step(
        self, losses: Mapping[str, Tensor], shared_params: Iterable[Tensor], grad_scale: float = 1.0
    ) -> dict[str, dict[str, float]]:
        """Compute the GradNorm loss and write its gradient into the present tasks' weights.

        Returns ``{task: {"grad_norm": G_i, "target": target_i, "weight": w_i}}`` (floats).
        Fewer than two present tasks: nothing to balance, no gradient, returns ``{}``.
        """
        self._check(losses)
        shared = [p for p in shared_params if p.requires_grad]
        if not shared:
            raise ValueError("gradnorm_step: shared_params holds no tensor requiring grad")
        names = [n for n in self.task_names if n in losses and losses[n].requires_grad]
        if len(names) < 2:
            return {}
        self.prepare()
        norms = []
        for name in names:
            grads = torch.autograd.grad(losses[name].reshape(()), shared, retain_graph=True, allow_unused=True)
            sq = [g.detach().float().pow(2).sum() for g in grads if g is not None]
            norms.append(torch.stack(sq).sum().sqrt() if sq else torch.zeros((), device=shared[0].device))
        norms_t = torch.stack(norms)
        idx = [self.task_names.index(n) for n in names]
        with torch.no_grad():
            current = torch.stack([losses[n].detach().float().reshape(()) for n in names]).to(
                self.initial_losses.device
            )
            first = self.initial_losses[idx]
            fresh = torch.isnan(first)
            self.initial_losses[idx] = torch.where(fresh, current, first)
            l0 = self.initial_losses[idx].clamp_min(1e-12)
            ratio = current / l0
            rel = ratio / ratio.mean()
        w = torch.stack([self.task_weights[n] for n in names])
        g = w * norms_t.to(w.device)
        target = (g.mean() * rel.to(w.device) ** self.alpha).detach()
        gn_loss = (g - target).abs().sum()
        params = [self.task_weights[n] for n in names]
        grads = torch.autograd.grad(gn_loss, params)
        for p, gr in zip(params, grads):
            gr = gr * grad_scale
            p.grad = gr if p.grad is None else p.grad + gr
        self.last_gradnorm_loss = float(gn_loss.detach())
        return {
            n: {"grad_norm": float(g[i].detach()), "target": float(target[i]), "weight": float(w[i].detach())}
            for i, n in enumerate(names)
        }


class DWAWeighting(Weighting):
    """Dynamic Weight Average (Liu, Johns and Davison, CVPR 2019).

    w_i(t) = K * exp(r_i(t-1) / T) / sum_j exp(r_j(t-1) / T), with r_i(t-1) = L_i(t-1) / L_i(t-2)
    the ratio of the task's unweighted, epoch-averaged training losses of the last two
    epochs, K the number of tasks and T the ``temperature`` (default 2). The first two
    epochs use equal weights (1). A task that slows down (ratio near or above 1) gains weight.

    The trainer calls ``weighting.epoch_end({task: mean unweighted loss of the epoch})`` after
    each epoch; a task missing from it (no labels all epoch) gets ratio 1. The last two
    epochs' means, the epoch count and the current weights are buffers (in ``state_dict``).
    """

    options_model = DWAOptions

    def __init__(self, tasks: Iterable[TaskLike], temperature: float = 2.0):
        super().__init__(tasks)
        if not temperature > 0:
            raise ConfigError(f"weighting: dwa temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        k = len(self.task_names)
        self.register_buffer("loss_history", torch.full((2, k), float("nan"), dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.register_buffer("current_weights", torch.ones(k))

    def weight(self, name: str, loss: Tensor) -> Tensor:
        return self.current_weights[self.task_names.index(name)].to(loss.dtype)

    @torch.no_grad()
    def epoch_end(self, mean_losses: Mapping[str, float]) -> dict[str, float]:
        """Record one epoch's mean unweighted losses; returns the weights for the next epoch."""
        unknown = set(mean_losses) - set(self.task_names)
        if unknown:
            raise KeyError(f"dwa: mean losses for unknown task(s) {sorted(unknown)}")
        row = torch.tensor(
            [float(mean_losses.get(n, float("nan"))) for n in self.task_names],
            dtype=torch.float64,
            device=self.loss_history.device,
        )
        self.loss_history[0] = self.loss_history[1].clone()
        self.loss_history[1] = row
        self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            ratio = self.loss_history[1] / self.loss_history[0]
            ratio = torch.where(torch.isfinite(ratio), ratio, torch.ones_like(ratio))
            k = len(self.task_names)
            self.current_weights.copy_((k * torch.softmax(ratio / self.temperature, dim=0)).float())
        return {n: float(w) for n, w in zip(self.task_names, self.current_weights)}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


STRATEGIES: dict[str, type] = {
    "uncertainty": UncertaintyWeighting,
    "fixed": FixedWeighting,
    "equal": EqualWeighting,
    "gradnorm": GradNormWeighting,
    "dwa": DWAWeighting,
}


def build_weighting(name: Optional[str], tasks: Iterable[TaskLike], **options: Any) -> Weighting:
    """Build a weighting strategy by name (``None`` = ``uncertainty``, the default).

    Args:
        name: ``uncertainty | fixed | equal | gradnorm | dwa``.
        tasks: TaskSpecs, task mappings or names, in the order used for list-valued options.
        **options: the strategy's keyword options (e.g. ``initial_log_vars``, ``weights``,
            ``alpha``, ``temperature``).

    Raises:
        ConfigError: unknown strategy or option, listing the valid ones.
    """
    name = "uncertainty" if name is None else str(name).lower()
    if name not in STRATEGIES:
        raise unknown_key_error("loss.weighting", name, list(STRATEGIES), "weighting")
    cls = STRATEGIES[name]
    parsed = validate(options_model(cls), options, "loss.options")
    return cls(tasks, **parsed.model_dump(exclude_unset=True))


def options_model(cls: type) -> type:
    """The options schema of a strategy class: its ``options_model``, else one read from the
    keyword arguments of its ``__init__`` (any value; the class checks them itself)."""
    declared = getattr(cls, "options_model", None)
    if declared is not None:
        return declared
    from pydantic import create_model

    params = [p for p in inspect.signature(cls.__init__).parameters.values() if p.name not in ("self", "tasks")]
    fields = {
        p.name: (Any, p.default if p.default is not p.empty else ...)
        for p in params
        if p.kind == p.POSITIONAL_OR_KEYWORD or p.kind == p.KEYWORD_ONLY
    }
    return create_model(f"{cls.__name__}Options", __base__=Section, **fields)


def _register_options() -> None:
    for strategy, cls in STRATEGIES.items():
        register_options("weighting", strategy, options_model(cls))


_register_options()


def weighting_param_group(weighting: Weighting, lr: float) -> dict:
    """Optimiser group for a weighting's learnable parameters: no weight decay, own LR.

    Weight decay would pull UW log-variances towards 0 (sigma^2 = 1) whatever the losses.
    Choose ``lr`` so the log-variances can travel about |log L| over the run: with Adam a
    parameter moves at most ~lr per step, so lr >= |log L| / steps (e.g. 1e-2 for a few
    thousand steps). ``params`` is empty for strategies without parameters (equal, fixed,
    dwa); torch accepts such a group.
    """
    return {"params": [p for p in weighting.parameters() if p.requires_grad], "weight_decay": 0.0, "lr": float(lr)}
