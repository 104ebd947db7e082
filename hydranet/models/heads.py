"""Task heads. Every head is built from a :class:`~hydranet.tasks.TaskSpec` and returns one tensor.

* :class:`DenseHead` works on the decoder's shared map: per-channel 1x1 conv -> ReLU6 ->
  3x3 conv (the Multi-Task RefineNet head), ``N x C x H/s x W/s``.
* :class:`GlobalHead` works on the encoder's global feature (the last map of a CNN, a
  ViT's class token as a 1x1 map): global average pool ->
  dropout -> linear, ``N x C``.
"""

from __future__ import annotations

from torch import nn

from ..tasks import TaskSpec


class DenseHead(nn.Sequential):
    """Per-pixel outputs (segmentation logits, depth in metres, normals)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, in_channels, 1, groups=in_channels, bias=False),
            nn.ReLU6(inplace=True),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True),
        )
        self.out_channels = out_channels


class GlobalHead(nn.Sequential):
    """Image-level outputs (classification logits, regression values)."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 0, dropout: float = 0.0):
        layers = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if hidden:
            layers += [nn.Linear(in_channels, hidden), nn.ReLU(inplace=True)]
            in_channels = hidden
        layers += [nn.Dropout(dropout), nn.Linear(in_channels, out_channels)]
        super().__init__(*layers)
        self.out_channels = out_channels


def build_head(task: TaskSpec, dense_channels: int, global_channels: int) -> nn.Module:
    """The head for ``task``: dense heads read the decoder, global heads the encoder."""
    if task.dense:
        return DenseHead(dense_channels, task.channels)
    return GlobalHead(
        global_channels,
        task.channels,
        hidden=task.options.hidden,
        dropout=task.options.dropout,
    )
