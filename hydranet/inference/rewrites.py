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
* :class:`SeparableMaxPool2d` - exact k x k max pooling (stride 1, -inf padding) as a
  banded 1 x k then k x 1 running maximum (CPU fast path; bit-identical).
* :class:`ChannelScale` - a per-channel 1x1 convolution (``groups == channels``) as a
  broadcast multiply (the same single product per element).
* :class:`FastChainedResidualPool` - a chained residual pool with in-place residual sums.
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

from ..models.refinenet import ChainedResidualPool

__all__ = [
    "TapConv2d",
    "SumFirstChainedResidualPool",
    "ChannelIdentityReLU6",
    "SeparableMaxPool2d",
    "ChannelScale",
    "FastChainedResidualPool",
    "separable_max_pool2d",
    "replace_modules",
]


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
        taps[: cout * n_taps, :, 0, 0] = weight.permute(0, 2, 3, 1).reshape(cout * n_taps, cin)
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


# --- exact fast max pooling -------------------------------------------------------------


def _window_max(x: torch.Tensor, dim: int, kernel: int, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Max over windows of ``kernel`` consecutive elements along ``dim`` (no padding).

    Doubling: maxima over windows of 2, 4, 8, ... elements, then the windows of the powers of
    two in ``kernel``'s binary form side by side, so a window of k costs about
    log2(k) + popcount(k) - 1 elementwise maxima instead of k - 1 (3 for k = 5). The last
    maximum is written into ``out`` when given.
    """
    n_out = x.shape[dim] - kernel + 1
    parts = []  # (tensor of maxima over windows of `width`, width)
    power, width, remaining = x, 1, kernel
    while True:
        if remaining & 1:
            parts.append((power, width))
        remaining >>= 1
        if not remaining:
            break
        n = power.shape[dim] - width
        power = torch.maximum(power.narrow(dim, 0, n), power.narrow(dim, width, n))
        width *= 2
    terms, offset = [], 0
    for tensor, w in parts:
        terms.append(tensor.narrow(dim, offset, n_out))
        offset += w
    result = terms[0]
    for i, term in enumerate(terms[1:], start=2):
        if out is not None and i == len(terms):
            return torch.maximum(result, term, out=out)
        result = torch.maximum(result, term)
    if out is not None:
        return out.copy_(result)
    return result


TILE_BYTES = 2 << 20  # row bands of about this size stay in the caches between the passes


def separable_max_pool2d(
    x: torch.Tensor, kernel_size: int, padding: int, tile_bytes: Optional[int] = TILE_BYTES
) -> torch.Tensor:
    """``F.max_pool2d(x, kernel_size, stride=1, padding=padding)``, bit for bit.

    Max pooling with stride 1 pads with -inf, so it is separable: a 1 x k max along the
    width, then a k x 1 max along the height, each computed by doubling with
    ``torch.maximum`` on shifted views (the input's memory format is kept). Large maps
    are processed in bands of rows of about ``tile_bytes`` (each band with its
    ``kernel_size - 1`` halo rows, copied into one reused -inf-bordered buffer), so the
    intermediate maxima stay in the caches instead of streaming the whole map through
    memory six times; ``None`` disables banding.
    """
    if x.dim() != 4:
        raise ValueError(f"expected an N x C x H x W tensor, got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    k, p = int(kernel_size), int(padding)
    if not 0 <= p <= k // 2:
        raise ValueError(f"padding {p} must be between 0 and kernel_size // 2 ({k // 2})")
    out_h, out_w = h + 2 * p - k + 1, w + 2 * p - k + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"a {k}x{k} window does not fit a {h}x{w} map with padding {p}")
    neg = float("-inf")
    row_bytes = c * (w + 2 * p) * x.element_size()  # one padded row of one image
    rows = out_h if not tile_bytes else max(8, -(-int(tile_bytes) // max(1, row_bytes)))
    if k == 1:
        return x.clone()
    if rows >= out_h:
        if p:
            x = F.pad(x, (p, p, p, p), value=neg)
        return _window_max(_window_max(x, 3, k), 2, k)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, c, out_h, out_w), dtype=x.dtype, device=x.device, memory_format=fmt)
    buf = torch.empty((1, c, rows + k - 1, w + 2 * p), dtype=x.dtype, device=x.device, memory_format=fmt)
    if p:
        buf[..., :p].fill_(neg)
        buf[..., p + w :].fill_(neg)
    for i in range(n):  # image by image: a band of one image is one contiguous block
        for r0 in range(0, out_h, rows):
            r1 = min(r0 + rows, out_h)
            # Output rows r0..r1 read padded rows r0..r1+k-1, i.e. input rows r0-p..r1+k-1-p.
            a, b = max(r0 - p, 0), min(r1 + k - 1 - p, h)
            top, bottom = a - (r0 - p), (r1 + k - 1 - p) - b
            band = buf[:, :, : r1 - r0 + k - 1]
            if top:
                band[:, :, :top, p : p + w].fill_(neg)
            if bottom:
                band[:, :, band.shape[2] - bottom :, p : p + w].fill_(neg)
            band[:, :, top : top + b - a, p : p + w].copy_(x[i : i + 1, :, a:b])
            _window_max(_window_max(band, 3, k), 2, k, out=out[i : i + 1, :, r0:r1])
    return out


class SeparableMaxPool2d(nn.Module):
    """Drop-in for ``nn.MaxPool2d(k, stride=1, padding=p)``: same result, faster on CPU.

    On CPU it uses :func:`separable_max_pool2d`; elsewhere (CUDA, where the native kernel
    is fast) and under TorchScript/ONNX tracing it calls ``F.max_pool2d``.
    """

    def __init__(self, kernel_size: int, padding: int, tile_bytes: Optional[int] = TILE_BYTES):
        super().__init__()
        self.kernel_size = int(kernel_size)
        self.padding = int(padding)
        self.tile_bytes = tile_bytes

    @classmethod
    def from_pool(cls, pool: nn.MaxPool2d) -> SeparableMaxPool2d:
        k, s, p, d = (pool.kernel_size, pool.stride, pool.padding, pool.dilation)
        k, s, p, d = (v if isinstance(v, int) else v[0] if len(set(v)) == 1 else None for v in (k, s, p, d))
        if None in (k, s, p, d) or s != 1 or d != 1 or pool.ceil_mode or p > k // 2:
            raise ValueError(f"not a square stride-1 max pool: {pool}")
        return cls(k, p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and not torch.jit.is_tracing() and not torch.jit.is_scripting():
            return separable_max_pool2d(x, self.kernel_size, self.padding, self.tile_bytes)
        return F.max_pool2d(x, self.kernel_size, 1, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, padding={self.padding}"


# --- per-channel 1x1 convolutions -----------------------------------------------------------


class ChannelScale(nn.Module):
    """``x * weight[c] (+ bias[c])``: a 1x1 convolution with ``groups == channels``."""

    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor] = None):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().reshape(1, -1, 1, 1).clone(), requires_grad=False)
        self.bias = (
            nn.Parameter(bias.detach().reshape(1, -1, 1, 1).clone(), requires_grad=False) if bias is not None else None
        )

    @staticmethod
    def applies_to(conv: nn.Module) -> bool:
        return (
            type(conv) is nn.Conv2d
            and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1)
            and conv.padding in ((0, 0), "valid")
            and conv.groups == conv.in_channels == conv.out_channels
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> ChannelScale:
        return cls(conv.weight, conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[1]}, bias={self.bias is not None}"


class FastChainedResidualPool(nn.Module):
    """:class:`~hydranet.models.refinenet.ChainedResidualPool` with in-place residual sums."""

    def __init__(self, crp: ChainedResidualPool, pool: nn.Module):
        super().__init__()
        self.pool = pool
        self.convs = crp.convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, out = x, None
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            pooled = self.pool(top)  # a new tensor: free to scale in place
            if isinstance(conv, ChannelScale) and conv.bias is None:
                if i == last and out is not None:
                    return out.addcmul_(pooled, conv.weight)  # the last scaled map is not needed alone
                top = pooled.mul_(conv.weight)
            else:
                top = conv(pooled)
            out = top + x if out is None else out.add_(top)
        return x if out is None else out
