"""Gradient aggregators from torchjd, by ``loss.weighting`` name: Gramian -> per-task weights.

Every method here maps the Gramian ``G = J J^T`` of the per-task gradients (rows of ``J``)
to one weight per task; the update is ``d = J^T w``. Working from the Gramian (a T x T
matrix) is what lets the representation mode and torchrun be exact and cheap: see
:mod:`.gradient`. The aggregators themselves are torchjd's (``pip install 'hydranet[mtl]'``):

=============  ===========================================================================
``pcgrad``     Yu et al., "Gradient surgery for multi-task learning", NeurIPS 2020
``mgda``       Sener and Koltun, "Multi-task learning as multi-objective optimization"
               (MGDA), NeurIPS 2018: the min-norm point of the gradients' convex hull
``cagrad``     Liu et al., "Conflict-averse gradient descent", NeurIPS 2021 (option ``c``)
``nash_mtl``   Navon et al., "Multi-task learning as a bargaining game", ICML 2022
``imtl_g``     Liu et al., "Towards impartial multi-task learning", ICLR 2021 (IMTL-G)
``aligned_mtl`` Senushkin et al., "Independent component alignment for multi-task
               learning", CVPR 2023
``upgrad``     Quinton and Rey, "Jacobian descent for multi-objective optimization", 2024
``dualproj``   the same paper's projection of the mean onto the gradients' dual cone
=============  ===========================================================================

``scale_invariant``: the method's update does not change when a task's loss is multiplied
by a constant (Nash-MTL, IMTL-G), so scaling the losses first (``loss_scaling:
uncertainty``) would do nothing; it is refused for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from ..errors import ConfigError

EXTRA_HINT = "pip install 'hydranet[mtl]'"


@dataclass(frozen=True)
class AggregatorEntry:
    """One method: how to build it from its options, and what it needs to know."""

    build: Callable[..., Any]  # (n_tasks, **options) -> torchjd aggregator
    options: dict  # option name -> default
    scale_invariant: bool = False
    paper: str = ""


def _torchjd():
    try:
        import torchjd.aggregation as agg
    except ImportError as exc:
        raise ConfigError(f"loss.weighting: gradient methods need torchjd ({EXTRA_HINT}): {exc}") from None
    return agg


def _pcgrad(n, **o):
    return _torchjd().PCGrad()


def _mgda(n, **o):
    return _torchjd().MGDA()


def _cagrad(n, c):
    return _torchjd().CAGrad(c=float(c))


def _nash(n, max_norm, update_weights_every, optim_niter):
    every, niter = int(update_weights_every), int(optim_niter)
    return _torchjd().NashMTL(n_tasks=n, max_norm=float(max_norm), update_weights_every=every, optim_niter=niter)


def _imtl_g(n, **o):
    return _torchjd().IMTLG()


def _aligned(n, **o):
    return _torchjd().AlignedMTL()


def _upgrad(n, **o):
    return _torchjd().UPGrad()


def _dualproj(n, **o):
    return _torchjd().DualProj()


AGGREGATORS: dict[str, AggregatorEntry] = {
    "pcgrad": AggregatorEntry(_pcgrad, {}, paper="Yu et al. NeurIPS 2020"),
    "mgda": AggregatorEntry(_mgda, {}, paper="Sener and Koltun NeurIPS 2018"),
    "cagrad": AggregatorEntry(_cagrad, {"c": 0.4}, paper="Liu et al. NeurIPS 2021"),
    "nash_mtl": AggregatorEntry(
        _nash,
        {"max_norm": 1.0, "update_weights_every": 1, "optim_niter": 20},
        scale_invariant=True,
        paper="Navon et al. ICML 2022",
    ),
    "imtl_g": AggregatorEntry(_imtl_g, {}, scale_invariant=True, paper="Liu et al. ICLR 2021"),
    "aligned_mtl": AggregatorEntry(_aligned, {}, paper="Senushkin et al. CVPR 2023"),
    "upgrad": AggregatorEntry(_upgrad, {}, paper="Quinton and Rey 2024"),
    "dualproj": AggregatorEntry(_dualproj, {}, paper="Quinton and Rey 2024"),
}


def build_aggregator(name: str, n_tasks: int, options: dict) -> Callable[[Tensor], Tensor]:
    """``weights_of(gramian) -> w`` for method ``name`` (a T x T Gramian, float64 is fine).

    Raises:
        ConfigError: torchjd (or the solver the method needs) is not installed, naming the extra.
    """
    entry = AGGREGATORS[name]
    try:
        aggregator = entry.build(n_tasks, **options)
    except ImportError as exc:
        raise ConfigError(f"loss.weighting: {name} needs its solver ({EXTRA_HINT}): {exc}") from None
    if hasattr(aggregator, "gramian_weighting"):
        weighting = aggregator.gramian_weighting

        def weights_of(gramian: Tensor) -> Tensor:
            return weighting(gramian)

    else:  # Nash-MTL reads the matrix, but only through J J^T and ||J^T w||: a square root of G will do
        weighting = aggregator.weighting

        def weights_of(gramian: Tensor) -> Tensor:
            vals, vecs = torch.linalg.eigh(gramian)
            return weighting(vecs * vals.clamp_min(0).sqrt())

    return weights_of
