"""The encoder contract, and the weight loading every family shares.

Every encoder keeps this contract (decoders and heads rely on it, so no magic numbers):

* ``forward(x)`` returns a list of tensors, ordered from high to low resolution;
* ``out_channels`` is a tuple with the channel count of each returned feature;
* ``strides`` is a tuple with the stride of each feature relative to the input
  (non-decreasing; several features may share a stride, as in MobileNetV2 where
  two stages end at stride 16 and two at stride 32);
* ``encode(x, dense=True)`` returns ``(features, global_feature)``: the image-level heads
  read ``global_feature`` (``N x global_channels x h x w``, average-pooled by the head).
  Convolutional encoders give their last feature; a ViT gives its class token (or its
  mean token) as an ``N x C x 1 x 1`` map, and skips the dense features when ``dense``
  is False.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import torch
from torch import nn

from ...errors import WeightsUnavailableError


class Encoder(nn.Module):
    """Base class: records the feature info every decoder reads."""

    def __init__(self, out_channels: Sequence[int], strides: Sequence[int], global_channels: int | None = None):
        super().__init__()
        if len(out_channels) != len(strides) or any(c <= 0 for c in out_channels):
            raise ValueError(f"invalid feature info: channels {out_channels}, strides {strides}")
        if list(strides) != sorted(strides):
            raise ValueError(f"feature strides must not decrease, got {strides}")
        self.out_channels = tuple(int(c) for c in out_channels)
        self.strides = tuple(int(s) for s in strides)
        self.global_channels = int(global_channels or self.out_channels[-1])

    def encode(self, x: torch.Tensor, dense: bool = True) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(features, global_feature)``; here the global feature is the last feature map."""
        features = self(x)
        return features, features[-1]

    def shared_parameters(self) -> list[nn.Parameter]:
        """The weights of the last layer every task reads (GradNorm's shared layer)."""
        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        return [layers[-1].weight]


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


@torch.no_grad()
def stages_by_stride(blocks: Sequence[nn.Module], min_stride: int = 4) -> StagedEncoder:
    """A :class:`StagedEncoder` cutting a chain of blocks at the last block of each stride.

    The strides and channels are read from one probe at 64x64 (in eval mode, so BatchNorm
    statistics are left alone); features below ``min_stride`` join the first stage.
    """
    blocks = list(blocks)
    was_training = [b.training for b in blocks]
    x, ends = torch.zeros(1, 3, 64, 64), []
    for i, block in enumerate(blocks):
        block.eval()
        x = block(x)
        ends.append((i, 64 // x.shape[-1], x.shape[1]))
    for block, mode in zip(blocks, was_training):
        block.train(mode)
    last = {}
    for i, stride, channels in ends:
        if stride >= min_stride:
            last[stride] = (i, channels)
    stages, start, channels, strides = [], 0, [], []
    for stride in sorted(last):
        i, c = last[stride]
        stages.append(nn.Sequential(*blocks[start : i + 1]))
        start = i + 1
        channels.append(c)
        strides.append(stride)
    return StagedEncoder(stages, channels, strides)


def load_local_state_dict(path: str) -> dict:
    """A state dict of tensors from a local file (weights only; a ``state_dict`` entry is unwrapped)."""
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"model.encoder_weights: the file {path!r} does not exist")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, code-carrying pickles
        raise WeightsUnavailableError(f"cannot load encoder weights from {path!r}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path!r} does not hold a state dict of tensors")
    return sd


CLASSIFIER_PREFIXES = ("classifier", "fc.", "heads.")  # torchvision classifier heads (not used)


def load_matching(model: nn.Module, sd: dict, source: str, name: str) -> None:
    """Load ``sd`` into ``model``, ignoring classifier heads; a clear error on any other mismatch."""
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise WeightsUnavailableError(f"{source!r} does not match {name}: {exc}") from exc
    missing = [k for k in missing if not k.startswith(CLASSIFIER_PREFIXES)]
    unexpected = [k for k in unexpected if not k.startswith(CLASSIFIER_PREFIXES)]
    if missing or unexpected:
        raise WeightsUnavailableError(
            f"{source!r} does not match {name}: missing keys {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
        )


def torchvision_weights(builder: Callable, weights_enum, weights, progress: bool, **kwargs) -> nn.Module:
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
                f"({torch.hub.get_dir()}/checkpoints/)."
            ) from exc
    model = builder(weights=None, **kwargs)
    load_matching(model, load_local_state_dict(str(weights)), str(weights), builder.__name__)
    return model
