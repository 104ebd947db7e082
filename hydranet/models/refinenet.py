"""RefineNet decoders: multi-scale encoder features -> one shared map at the finest stride.

Both decoders take the encoder's ``out_channels`` and ``strides`` and expose their own
``out_channels`` and ``stride``. Features that share a stride form one refinement
path; paths are processed from the coarsest to the finest, each one receiving the
previous path's output.

* :class:`RefineNet` - the full network of Lin et al. (CVPR 2017): adaptive 3x3 conv
  and two residual conv units per input, multi-resolution fusion, chained residual
  pooling and an output RCU.
* :class:`LightRefineNet` - Light-Weight RefineNet (Nekrasov et al., BMVC 2018), the
  decoder of Multi-Task RefineNet (ICRA 2019): 1x1 convs, no RCUs, CRP only. Its
  arithmetic follows the original step for step, so original checkpoints reproduce
  their outputs exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..schema.registry import register_options
from ..schema.types import EmptySection


def conv1x1(cin: int, cout: int, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, bias=bias, groups=groups)


def conv3x3(cin: int, cout: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


def upsample_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear upsampling (align_corners=False) to the spatial size of ``like``."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def group_by_stride(strides: Sequence[int]) -> list[list[int]]:
    """Indices of features sharing a stride, coarsest group first, each group in input order."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(strides):
        groups.setdefault(s, []).append(i)
    return [groups[s] for s in sorted(groups, reverse=True)]


class ChainedResidualPool(nn.Module):
    """CRP: ``top = x; repeat: top = conv(pool(top)); x = x + top``.

    Args:
        channels: input and output channels.
        stages: number of pool -> conv blocks in the chain.
        kernel_size: conv kernel (1 in Light-Weight RefineNet, 3 in RefineNet).
        depthwise: per-channel convs (groups=channels), as in the last light-weight block.
        pool_size: max-pool window (stride 1, "same" padding).
    """

    def __init__(
        self, channels: int, stages: int = 4, kernel_size: int = 1, depthwise: bool = False, pool_size: int = 5
    ):
        super().__init__()
        self.pool = nn.MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        groups = channels if depthwise else 1
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=groups, bias=False)
            for _ in range(stages)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top = x
        for conv in self.convs:
            top = conv(self.pool(top))
            x = top + x
        return x


class ResidualConvUnit(nn.Module):
    """RCU: ``x + conv3x3(relu(conv3x3(relu(x))))`` (Lin et al. 2017)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv3x3(channels, channels, bias=True)
        self.conv2 = conv3x3(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class MultiResolutionFusion(nn.Module):
    """3x3 conv on each input, upsample all to the largest input, sum."""

    def __init__(self, channels: int, num_inputs: int):
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(channels, channels) for _ in range(num_inputs))

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        largest = max(inputs, key=lambda t: t.shape[-1] * t.shape[-2])
        out = None
        for conv, x in zip(self.convs, inputs):
            y = conv(x)
            if y.shape[-2:] != largest.shape[-2:]:
                y = upsample_to(y, largest)
            out = y if out is None else out + y
        return out


class RefineBlock(nn.Module):
    """One RefineNet path: per-input adaptation (conv + 2 RCUs), fusion, ReLU, CRP, output RCU."""

    def __init__(self, in_channels: Sequence[int], width: int, has_top: bool, crp_stages: int):
        super().__init__()
        self.adapt = nn.ModuleList(
            nn.Sequential(conv3x3(c, width), ResidualConvUnit(width), ResidualConvUnit(width)) for c in in_channels
        )
        n_inputs = len(in_channels) + int(has_top)
        self.fusion = MultiResolutionFusion(width, n_inputs) if n_inputs > 1 else None
        self.crp = ChainedResidualPool(width, crp_stages, kernel_size=3)
        self.out = ResidualConvUnit(width)

    def forward(self, features: Sequence[torch.Tensor], top: torch.Tensor | None) -> torch.Tensor:
        inputs = [adapt(f) for adapt, f in zip(self.adapt, features)]
        if top is not None:
            inputs.append(top)
        x = self.fusion(inputs) if self.fusion is not None else inputs[0]
        return self.out(self.crp(F.relu(x)))


class RefineNet(nn.Module):
    """Full RefineNet decoder (Lin et al., CVPR 2017) over any encoder's features."""

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], width: int = 256, crp_stages: int = 2):
        super().__init__()
        self.groups = group_by_stride(strides)
        self.blocks = nn.ModuleList(
            RefineBlock([in_channels[i] for i in g], width, has_top=k > 0, crp_stages=crp_stages)
            for k, g in enumerate(self.groups)
        )
        self.out_channels = width
        self.stride = min(strides)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        top = None
        for block, group in zip(self.blocks, self.groups):
            top = block([features[i] for i in group], top)
        return top


class LightRefineNet(nn.Module):
    """Light-Weight RefineNet decoder (Nekrasov et al., BMVC 2018).

    Per path (coarsest first): ``x = relu6(sum of 1x1 lateral convs (+ upsampled top))``,
    ``x = crp(x)``; then, except on the finest path, a 1x1 ``adapt`` conv and bilinear
    upsampling to the next path's size. The finest path's CRP uses per-channel convs.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], width: int = 256, crp_stages: int = 4):
        super().__init__()
        self.groups = group_by_stride(strides)
        self.lateral = nn.ModuleList(conv1x1(c, width) for c in in_channels)
        last = len(self.groups) - 1
        self.crp = nn.ModuleList(
            ChainedResidualPool(width, crp_stages, kernel_size=1, depthwise=k == last) for k in range(len(self.groups))
        )
        self.adapt = nn.ModuleList(conv1x1(width, width) for _ in range(last))
        self.relu = nn.ReLU6(inplace=True)
        self.out_channels = width
        self.stride = min(strides)

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        top = None
        for k, group in enumerate(self.groups):
            x = self.lateral[group[0]](features[group[0]])
            for i in group[1:]:
                x = x + self.lateral[i](features[i])
            if top is not None:
                x = x + top
            x = self.crp[k](self.relu(x))
            if k < len(self.adapt):
                top = upsample_to(self.adapt[k](x), features[self.groups[k + 1][0]])
        return x


DECODERS = {"lightweight": LightRefineNet, "refinenet": RefineNet}
for _name in DECODERS:
    register_options("decoder", _name, EmptySection)
