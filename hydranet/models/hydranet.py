"""HydraNet: one encoder, one decoder, many heads; ``forward`` returns ``{task: tensor}``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks import TaskSpec
from .heads import build_head


class HydraNet(nn.Module):
    """Composes an encoder, a decoder and one head per task.

    Args:
        encoder: an :class:`~hydranet.models.encoders.Encoder`: ``encode(x, dense)`` gives the
            features (high to low resolution, with ``out_channels``) and the global feature
            image-level heads read (``global_channels``).
        decoder: maps that list to one shared map, with ``out_channels`` and ``stride``.
        tasks: the task specs; their names key the heads and the outputs.
        config: the plain-data config the model was built from (kept for checkpoints).
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, tasks: Sequence[TaskSpec], config: dict | None = None):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.tasks = list(tasks)
        self.heads = nn.ModuleDict(
            {t.name: build_head(t, decoder.out_channels, encoder.global_channels) for t in self.tasks}
        )
        self.config = config or {}
        self._needs_decoder = any(t.dense for t in self.tasks)
        self._needs_global = any(not t.dense for t in self.tasks)
        # Set by a gradient-level weighting in representation mode (hydranet.losses.gradient):
        # called with (decoder output, global feature or None), returns the tensors the heads read.
        self.representation_hook = None

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def forward(self, images: torch.Tensor, upsample: bool = True) -> dict[str, torch.Tensor]:
        """Run the network.

        Args:
            images: float ``N x 3 x H x W``, ImageNet-normalised RGB, any H and W.
            upsample: return dense outputs at the input size (bilinear); if False, at the
                decoder's stride (4), as the original network does.

        Returns:
            ``{task name: tensor}``: dense tasks ``N x C x H x W``, image-level tasks ``N x C``.
        """
        features, global_feature = self.encoder.encode(images, dense=self._needs_decoder)
        shared = self.decoder(features) if self._needs_decoder else None
        if self.representation_hook is not None:
            tapped, tapped_global = self.representation_hook(shared, global_feature if self._needs_global else None)
            shared, global_feature = tapped, global_feature if tapped_global is None else tapped_global
        return self.forward_heads(shared, global_feature, images.shape[-2:] if upsample else None)

    def forward_heads(
        self, shared: torch.Tensor | None, global_feature: torch.Tensor | None, size: tuple | None = None
    ) -> dict[str, torch.Tensor]:
        """The heads alone, on what they read: the decoder's map (dense heads) and the encoder's
        global feature (image-level heads); dense outputs resized to ``size`` (H, W) when given.
        (Training on cached trunk features calls this; ``forward`` is encoder, decoder, this.)"""
        outputs = {}
        for task in self.tasks:
            head = self.heads[task.name]
            if task.dense:
                y = head(shared)
                if size is not None:
                    y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            else:
                y = head(global_feature)
            outputs[task.name] = y
        return outputs
