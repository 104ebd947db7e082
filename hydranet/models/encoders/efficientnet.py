"""torchvision's EfficientNet-B0."""

from __future__ import annotations

from torchvision import models as tvm

from .base import Encoder, stages_by_stride, torchvision_weights


def efficientnet_b0(weights=None, progress: bool = True) -> Encoder:
    """torchvision's EfficientNet-B0, cut at the last block of strides 4, 8, 16 and 32."""
    net = torchvision_weights(tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, weights, progress)
    return stages_by_stride(net.features)
