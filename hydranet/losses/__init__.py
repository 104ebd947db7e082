"""Losses of the tasks and their weighting.

* :mod:`.task_losses`: one function per loss, masked to valid elements; ``task_loss`` and
  ``compute_losses`` apply them to a batch of the data contract.
* :mod:`.weighting`: strategies combining ``{task: loss}`` into ``(total, report)``
  (``uncertainty | fixed | equal | gradnorm | dwa``), built by ``build_weighting``.
* :mod:`.gradient` (with :mod:`.aggregators`): gradient-level methods (``pcgrad``, ``mgda``,
  ``cagrad``, ``nash_mtl``, ``imtl_g``, ``aligned_mtl``, ``upgrad``, ``dualproj``; torchjd);
  :mod:`.famo` and :mod:`.rlw`: FAMO and random loss weighting; all registered in ``STRATEGIES``.
* :mod:`.clipping`: ``clip_head_gradients``, per-head gradient clipping.
"""

from ..schema.registry import register_options
from .clipping import clip_head_gradients
from .famo import FAMOWeighting
from .gradient import GRADIENT_METHODS, GradientAggregation
from .rlw import RandomLossWeighting
from .task_losses import (
    LOSS_FORMS,
    LOSS_REGISTRY,
    LOSSES,
    LocalReduction,
    Loss,
    LossForm,
    angular,
    batch_statistics,
    berhu,
    compute_losses,
    cosine,
    cross_entropy,
    denormalize_prediction,
    finish_losses,
    l1,
    mse,
    normalize_target,
    register_loss,
    resolve_loss,
    silog,
    smooth_l1,
    task_loss,
)
from .weighting import (
    STRATEGIES,
    DWAWeighting,
    EqualWeighting,
    FixedWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    Weighting,
    build_weighting,
    options_model,
    weighting_param_group,
)

_MORE = {"famo": FAMOWeighting, "rlw": RandomLossWeighting, **GRADIENT_METHODS}
STRATEGIES.update(_MORE)
for _name, _cls in _MORE.items():
    register_options("weighting", _name, options_model(_cls))

__all__ = [
    "GradientAggregation",
    "GRADIENT_METHODS",
    "FAMOWeighting",
    "RandomLossWeighting",
    "build_weighting",
    "compute_losses",
    "batch_statistics",
    "finish_losses",
    "LocalReduction",
    "LossForm",
    "LOSS_FORMS",
    "task_loss",
    "clip_head_gradients",
    "LOSSES",
    "LOSS_REGISTRY",
    "Loss",
    "register_loss",
    "STRATEGIES",
    "resolve_loss",
    "normalize_target",
    "denormalize_prediction",
    "weighting_param_group",
    "Weighting",
    "EqualWeighting",
    "FixedWeighting",
    "UncertaintyWeighting",
    "GradNormWeighting",
    "DWAWeighting",
    "cross_entropy",
    "l1",
    "mse",
    "smooth_l1",
    "berhu",
    "silog",
    "cosine",
    "angular",
]
