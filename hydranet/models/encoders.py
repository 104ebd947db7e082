"""Encoders: image -> list of feature maps, from high to low resolution.

The contract every encoder keeps (decoders rely on it, so no magic numbers):

* ``forward(x)`` returns a list of tensors, ordered from high to low resolution;
* ``out_channels`` is a tuple with the channel count of each returned feature;
* ``strides`` is a tuple with the stride of each feature relative to the input
  (non-decreasing; several features may share a stride, as in MobileNetV2 where
  two stages end at stride 16 and two at stride 32).

``ENCODERS`` maps a config name to a builder ``fn(weights=None, progress=True, **options)``.
``weights`` is ``None`` (random init), ``"imagenet"`` (torchvision's weights API, which
needs network or torchvision's cache) or the path of a local state-dict file.
"""
from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

import torch
from torch import nn
from torchvision import models as tvm

from ..errors import ConfigError, WeightsUnavailableError


class Encoder(nn.Module):
    """Base class: records the feature info every decoder reads."""

    def __init__(self, out_channels: Sequence[int], strides: Sequence[int]):
        super().__init__()
        if len(out_channels) != len(strides) or any(c <= 0 for c in out_channels):
            raise ValueError(f"invalid feature info: channels {out_channels}, strides {strides}")
        if list(strides) != sorted(strides):
            raise ValueError(f"feature strides must not decrease, got {strides}")
        self.out_channels = tuple(int(c) for c in out_channels)
        self.strides = tuple(int(s) for s in strides)


class StagedEncoder(Encoder):
    """A chain of stages; the output of each stage is one feature map."""

    def __init__(self, stages: Sequence[nn.Module], out_channels: Sequence[int], strides: Sequence[int]):
        super().__init__(out_channels, strides)
        if len(stages) != len(out_channels):
            raise ValueError("one stage per feature expected")
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


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
MTRN_MOBILENET_V2_CONFIG = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                            (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


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
            layers.append(nn.Sequential(
                *[MTRNInvertedResidual(cin if j == 0 else c, c, t, s if j == 0 else 1) for j in range(n)]))
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


def _load_local_state_dict(path: str) -> dict:
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"encoder weights file {path!r} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, code-carrying pickles
        raise WeightsUnavailableError(f"cannot load encoder weights from {path!r}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path!r} does not hold a state dict of tensors")
    return sd


def _torchvision_weights(builder: Callable, weights_enum, weights, progress: bool, **kwargs) -> nn.Module:
    """Build a torchvision classifier and load ImageNet or local weights into it."""
    if weights is None:
        return builder(weights=None, **kwargs)
    if weights == "imagenet":
        try:
            return builder(weights=weights_enum.DEFAULT, progress=progress, **kwargs)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError
            url = weights_enum.DEFAULT.url
            raise WeightsUnavailableError(
                f"could not fetch ImageNet weights ({exc}). Offline? Download {url} on a machine "
                f"with network and pass the file with --encoder-weights PATH "
                f"(config: model.encoder_weights: PATH), or copy it to torch's hub cache "
                f"({torch.hub.get_dir()}/checkpoints/).") from exc
    model = builder(weights=None, **kwargs)
    sd = _load_local_state_dict(str(weights))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    # A classifier head of another size is fine (only the features are used); the rest is not.
    missing = [k for k in missing if not k.startswith(("classifier", "fc."))]
    unexpected = [k for k in unexpected if not k.startswith(("classifier", "fc."))]
    if missing or unexpected:
        raise WeightsUnavailableError(
            f"{weights!r} does not match {builder.__name__}: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}")
    return model


def mobilenet_v2(weights=None, progress: bool = True, width_mult: float = 1.0) -> Encoder:
    """torchvision's MobileNetV2, returning the ends of its c=24, 32, 64, 96, 160, 320 stages."""
    net = _torchvision_weights(tvm.mobilenet_v2, tvm.MobileNet_V2_Weights, weights, progress,
                               width_mult=width_mult)
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
            "RefineNet checkpoint (hydranet convert) or use encoder: mobilenet_v2")
    if weights is not None:
        sd = _load_local_state_dict(str(weights))
        enc.load_state_dict(sd)
    return enc


def _resnet(name: str):
    builder = getattr(tvm, name)
    weights_enum = getattr(tvm, {"resnet18": "ResNet18_Weights", "resnet34": "ResNet34_Weights",
                                 "resnet50": "ResNet50_Weights", "resnet101": "ResNet101_Weights"}[name])

    def build(weights=None, progress: bool = True) -> Encoder:
        net = _torchvision_weights(builder, weights_enum, weights, progress)
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


ENCODERS: dict[str, Callable[..., Encoder]] = {
    "mobilenet_v2": mobilenet_v2,
    "mtrn_mobilenet_v2": mtrn_mobilenet_v2,
    "resnet18": _resnet("resnet18"),
    "resnet34": _resnet("resnet34"),
    "resnet50": _resnet("resnet50"),
    "resnet101": _resnet("resnet101"),
}


def build_encoder(name: str, weights=None, progress: bool = True, **options) -> Encoder:
    """Build the encoder called ``name`` (a key of :data:`ENCODERS`)."""
    if name not in ENCODERS:
        raise ConfigError(f"model.encoder: unknown encoder {name!r}; valid: {', '.join(ENCODERS)}")
    try:
        return ENCODERS[name](weights=weights, progress=progress, **options)
    except TypeError as exc:
        raise ConfigError(f"model.encoder_options: {exc}") from exc
