"""BatchNorm during training: per-process batch statistics (default), SyncBatchNorm, or frozen.

* default: each process normalises with its own batch's statistics and updates its own
  running statistics (DistributedDataParallel broadcasts rank 0's buffers at every forward);
  what one process with the global batch would compute only when the per-process batch is
  the global one.
* ``train.sync_bn: true``: SyncBatchNorm, batch statistics over all ranks (CUDA/NCCL only;
  a no-op for one process, where BatchNorm already sees the whole batch).
* ``train.freeze_bn: true``: BatchNorm layers stay in eval mode (running statistics fixed,
  affine parameters still learnt), so the result does not depend on how the batch is split.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import ConfigError
from ..schema.sections import TrainSection
from .distributed import DistContext


def prepare_batchnorm(model: nn.Module, train_cfg: TrainSection, ctx: DistContext, device: torch.device) -> nn.Module:
    """The model to train: with ``sync_bn`` under torchrun, its BatchNorm layers become SyncBatchNorm.

    ``sync_bn`` on CPU is an error (torch has no CPU SyncBatchNorm); on one CUDA process it
    changes nothing, which one warning says.
    """
    if not train_cfg["sync_bn"]:
        return model
    if device.type != "cuda":
        raise ConfigError(
            "train.sync_bn: SyncBatchNorm needs CUDA devices (torch has no CPU/gloo version); "
            "on CPU set train.freeze_bn: true (exact) or leave both off (per-process statistics)"
        )
    if not ctx.enabled:
        warnings.warn(
            "train.sync_bn: one process, nothing to synchronise (plain BatchNorm); it applies under torchrun",
            stacklevel=2,
        )
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def set_train_mode(model: nn.Module, train_cfg: TrainSection) -> None:
    """``model.train()``, then BatchNorm layers back to eval mode when ``freeze_bn`` is set."""
    model.train()
    if train_cfg["freeze_bn"]:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
