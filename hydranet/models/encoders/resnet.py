"""torchvision's ResNets (18, 34, 50, 101): layer1..layer4 at strides 4, 8, 16, 32."""

from __future__ import annotations

from torch import nn
from torchvision import models as tvm

from .base import Encoder, StagedEncoder, torchvision_weights


def _resnet(name: str):
    builder = getattr(tvm, name)
    weights_enum = getattr(
        tvm,
        {
            "resnet18": "ResNet18_Weights",
            "resnet34": "ResNet34_Weights",
            "resnet50": "ResNet50_Weights",
            "resnet101": "ResNet101_Weights",
        }[name],
    )

    def build(weights=None, progress: bool = True) -> Encoder:
        net = torchvision_weights(builder, weights_enum, weights, progress)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
        stages = [stem, net.layer2, net.layer3, net.layer4]
        channels = [_last_block_channels(s) for s in (net.layer1, net.layer2, net.layer3, net.layer4)]
        return StagedEncoder(stages, channels, (4, 8, 16, 32))

    build.__name__ = name
    build.__doc__ = f"torchvision's {name}, returning layer1..layer4 (strides 4, 8, 16, 32)."
    return build


def _last_block_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    return (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features


resnet18 = _resnet("resnet18")
resnet34 = _resnet("resnet34")
resnet50 = _resnet("resnet50")
resnet101 = _resnet("resnet101")
