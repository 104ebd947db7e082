"""Per-head gradient clipping: each task head's gradient capped at its own max L2 norm."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def clip_head_gradients(heads: Mapping[str, nn.Module], max_norm: float = 1.0) -> dict[str, float]:
    """Clip the gradient of each head separately to L2 norm ``max_norm``; returns the norms before.

    Works with any weighting strategy. Call it after ``total.backward()`` and before
    ``optimizer.step()``; with AMP, after ``scaler.unscale_(optimizer)``. Each head's norm
    is taken over all of that head's parameter gradients together (as
    ``torch.nn.utils.clip_grad_norm_`` does). Heads whose parameters have no gradient (an
    absent task) are left out of the returned dict and untouched.

    Args:
        heads: ``model.heads``, an ``nn.ModuleDict`` (or any mapping) keyed by task name.
        max_norm: the cap (> 0).

    Returns:
        ``{task: gradient norm before clipping}`` as floats.
    """
    if not max_norm > 0:
        raise ValueError(f"clip_head_gradients: max_norm must be > 0, got {max_norm}")
    norms: dict[str, float] = {}
    for name, head in heads.items():
        params = [p for p in head.parameters() if p.grad is not None]
        if not params:
            continue
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        norms[name] = float(norm)
    return norms
