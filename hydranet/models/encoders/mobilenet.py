"""MobileNets: torchvision's MobileNetV2 and V3-Large, and the Multi-Task RefineNet MobileNetV2."""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from ...errors import WeightsUnavailableError
from .base import Encoder, StagedEncoder, load_local_state_dict, stages_by_stride, torchvision_weights

# --- the Multi-Task RefineNet MobileNetV2 (expand conv also in the t=1 block) -----------


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MTRNInvertedResidual(nn.Module):
    """Inverted residual of the original Multi-Task RefineNet encoder.

    Unlike torchvision's, the expand 1x1 conv is present even when t = 1. Module names
    (``output.0/1/2``) follow the original so its checkpoints map one to one.
    """

    def __init__(self, cin: int, cout: int, expansion: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.output = nn.Sequential(
            _conv_bn_relu6(cin, hidden, 1),
            _conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden),
            _conv_bn_relu6(hidden, cout, 1, act=False),
        )
        self.out_channels = cout

    def forward(self, x):
        out = self.output(x)
        return out + x if self.residual else out


# (expansion t, channels c, repeats n, stride s) of layer2..layer8
MTRN_MOBILENET_V2_CONFIG = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MTRNMobileNetV2(Encoder):
    """MobileNetV2 exactly as in Multi-Task RefineNet (Nekrasov et al., ICRA 2019).

    Its submodules are named ``layer1`` ... ``layer8`` like the original network, so
    the original checkpoints load with a plain ``encoder.`` prefix. It returns the
    outputs of layer3 ... layer8 (strides 4, 8, 16, 16, 32, 32).
    """

    def __init__(self):
        cin, stride = 32, 2
        channels, strides = [], []
        layers = [_conv_bn_relu6(3, cin, 3, stride=2)]
        for t, c, n, s in MTRN_MOBILENET_V2_CONFIG:
            layers.append(
                nn.Sequential(*[MTRNInvertedResidual(cin if j == 0 else c, c, t, s if j == 0 else 1) for j in range(n)])
            )
            cin, stride = c, stride * s
            channels.append(c)
            strides.append(stride)
        super().__init__(channels[1:], strides[1:])  # layer3..layer8
        for i, layer in enumerate(layers, start=1):
            self.add_module(f"layer{i}", layer)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer2(self.layer1(x))
        features = []
        for i in range(3, 9):
            x = getattr(self, f"layer{i}")(x)
            features.append(x)
        return features


def mobilenet_v2(weights=None, progress: bool = True, width_mult: float = 1.0) -> Encoder:
    """torchvision's MobileNetV2, returning the ends of its c=24, 32, 64, 96, 160, 320 stages."""
    net = torchvision_weights(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, weights, progress, width_mult=width_mult)
    f = net.features
    bounds = ((0, 4), (4, 7), (7, 11), (11, 14), (14, 17), (17, 18))  # feature indices per stage
    stages = [nn.Sequential(*f[a:b]) for a, b in bounds]
    channels = [f[b - 1].out_channels for _, b in bounds]
    return StagedEncoder(stages, channels, (4, 8, 16, 16, 32, 32))


def mtrn_mobilenet_v2(weights=None, progress: bool = True) -> Encoder:
    """The Multi-Task RefineNet MobileNetV2; its weights come with the original checkpoints."""
    enc = MTRNMobileNetV2()
    if weights == "imagenet":
        raise WeightsUnavailableError(
            "mtrn_mobilenet_v2 has no torchvision ImageNet weights; load an original Multi-Task "
            "RefineNet checkpoint (hydranet convert) or use encoder: mobilenet_v2"
        )
    if weights is not None:
        sd = load_local_state_dict(str(weights))
        enc.load_state_dict(sd)
    return enc


def mobilenet_v3_large(weights=None, progress: bool = True, width_mult: float = 1.0) -> Encoder:
    """torchvision's MobileNetV3-Large, cut at the last block of strides 4, 8, 16 and 32."""
    net = torchvision_weights(
        tvm.mobilenet_v3_large, tvm.MobileNet_V3_Large_Weights, weights, progress, width_mult=width_mult
    )
    return stages_by_stride(net.features)
