"""Equivalent forms of layers, swapped in by the fast path and the ONNX exporter.

Each module here computes what the layer it replaces computes, either exactly or up to
fp32 summation order (~1e-6 relative), in a form a runtime executes faster:

* :class:`TapConv2d` - a k x k convolution with few outputs (the depth and normals heads)
  as a 1x1 convolution to one channel per output and kernel tap, then a fixed one-hot
  k x k convolution that shifts and sums the taps. Blocked convolution kernels (MKL-DNN,
  onnxruntime's NCHWc) pad the outputs to 16 channels, so a 256 -> 1 3x3 convolution costs
  as much as 256 -> 16; here the padding lands on the cheap 1x1 layer (measured at
  120x160: 3.4 -> 0.8 ms in PyTorch).
* :class:`SumFirstChainedResidualPool` - a chained residual pool that sums its chain before
  adding its input: onnxruntime then keeps the chain in its blocked layout.
* :class:`ChannelIdentityReLU6` - ReLU6 after an identity per-channel 1x1 convolution.
  onnxruntime fuses a ``Clip`` into a convolution but has no blocked-layout ``Clip`` of its
  own, so ``relu6(conv(a) + b)`` (the light-weight decoder's sums) leaves and re-enters the
  blocked layout on every path; multiplying by 1.0 is exact and gives the ``Clip`` a
  convolution to fuse into.

:func:`replace_modules` applies a rewrite to every matching submodule.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TapConv2d", "SumFirstChainedResidualPool", "ChannelIdentityReLU6", "replace_modules"]


def replace_modules(model: nn.Module, fn: Callable[[nn.Module], Optional[nn.Module]]) -> int:
    """Replace every submodule ``m`` for which ``fn(m)`` returns a module. Returns the count."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            if child is None:
                continue
            new = fn(child)
            if new is not None:
                parent._modules[name] = new
                count += 1
    return count


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class TapConv2d(nn.Module):
    """A ``k x k`` convolution as ``taps`` (1x1, ``C_in -> C_out*k*k``) then ``shift`` (fixed ``k x k``).

    ``taps`` output ``o*k*k + t`` is the input weighted by ``weight[o, :, t]``; ``shift``
    takes tap ``t`` of output ``o`` from the pixel offset ``t`` points at and adds the bias.
    Zero padding commutes with the bias-free 1x1 layer, so borders are handled as in the
    original convolution. The tap channels are padded with zero filters to ``multiple``
    (the blocked kernels' channel block).
    """

    def __init__(self, conv: nn.Conv2d, multiple: int = 16):
        super().__init__()
        cout, cin, kh, kw = conv.weight.shape
        n_taps = kh * kw
        channels = _round_up(cout * n_taps, multiple)
        weight = conv.weight.detach()
        taps = weight.new_zeros(channels, cin, 1, 1)
        taps[:cout * n_taps, :, 0, 0] = weight.permute(0, 2, 3, 1).reshape(cout * n_taps, cin)
        shift = weight.new_zeros(cout, channels, kh, kw)
        for o in range(cout):
            for t in range(n_taps):
                shift[o, o * n_taps + t, t // kw, t % kw] = 1.0
        self.taps = nn.Conv2d(cin, channels, 1, bias=False)
        self.shift = nn.Conv2d(channels, cout, (kh, kw), padding=conv.padding, bias=conv.bias is not None)
        self.taps.weight = nn.Parameter(taps, requires_grad=False)
        self.shift.weight = nn.Parameter(shift, requires_grad=False)
        if conv.bias is not None:
            self.shift.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    @staticmethod
    def applies_to(conv: nn.Module, multiple: int = 16) -> bool:
        """A plain stride-1 "same" convolution (odd k > 1) that is cheaper as taps.

        Cost in multiply-adds per pixel with outputs padded to ``multiple``: directly
        ``C_in*k*k*pad(C_out)``; as taps ``C_in*pad(C_out*k*k) + pad(C_out*k*k)*k*k*pad(C_out)``.
        """
        if type(conv) is not nn.Conv2d or conv.groups != 1 or conv.stride != (1, 1) or conv.dilation != (1, 1):
            return False
        kh, kw = conv.kernel_size
        if kh * kw == 1 or kh % 2 == 0 or kw % 2 == 0 or conv.padding != (kh // 2, kw // 2):
            return False
        if conv.padding_mode != "zeros":
            return False
        cin, n_taps = conv.in_channels, kh * kw
        outputs, tap_channels = _round_up(conv.out_channels, multiple), _round_up(conv.out_channels * n_taps, multiple)
        return cin * tap_channels + tap_channels * n_taps * outputs < cin * n_taps * outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift(self.taps(x))


class SumFirstChainedResidualPool(nn.Module):
    """A chained residual pool that sums the chain first: ``x + (t1 + t2 + ...)``.

    The same sum in another order (outputs differ by fp32 rounding, ~1e-7 relative). In
    onnxruntime, the last stage's convolution absorbs the chain's sum, and the input is
    added once at the end instead of at every stage.
    """

    def __init__(self, crp: nn.Module):
        super().__init__()
        self.pool = crp.pool
        self.convs = crp.convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, acc = x, None
        for conv in self.convs:
            top = conv(self.pool(top))
            acc = top if acc is None else acc + top
        return x if acc is None else x + acc


class ChannelIdentityReLU6(nn.Module):
    """``relu6(x)``, written as ``relu6(conv1x1(x, ones, groups=channels))`` (exact: x * 1.0 == x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("ones", torch.ones(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(F.conv2d(x, self.ones, groups=self.ones.shape[0]))
