"""Equivalent layer forms (hydranet.inference.rewrites): same outputs as the layers they replace."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hydranet.inference.rewrites import ChannelIdentityReLU6, SumFirstChainedResidualPool, TapConv2d, replace_modules
from hydranet.models.refinenet import ChainedResidualPool

pytestmark = pytest.mark.usefixtures("one_thread")


def rel_diff(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize("kernel", [(3, 3), (5, 5), (3, 5)])
@pytest.mark.parametrize("cout", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_tap_conv_equals_the_convolution(kernel, cout, bias, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(40, cout, kernel, padding=(kernel[0] // 2, kernel[1] // 2), bias=bias).eval()
    taps = TapConv2d(conv).eval()
    x = torch.randn(2, 40, 13, 9)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        taps = taps.to(memory_format=torch.channels_last)
    with torch.no_grad():
        ref, got = conv(x), taps(x)
    assert got.shape == ref.shape == (2, cout, 13, 9)
    assert rel_diff(got, ref) < 1e-5  # the same products, summed in another order
    n_taps = cout * kernel[0] * kernel[1]
    assert taps.taps.out_channels == -(-n_taps // 16) * 16  # padded to the channel block
    assert taps.shift.weight.sum() == n_taps  # one 1.0 per tap


def test_tap_conv_borders_by_hand():
    """A 3x3 all-ones filter over a 1-channel map of ones counts each pixel's in-image neighbours."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=True)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.fill_(0.5)
    got = TapConv2d(conv)(torch.ones(1, 1, 3, 4))
    expected = torch.tensor([[4, 6, 6, 4], [6, 9, 9, 6], [4, 6, 6, 4]], dtype=torch.float32) + 0.5
    assert torch.equal(got[0, 0], expected)


@pytest.mark.parametrize(
    "cin, cout, kernel, stride, expected",
    [
        (256, 1, 3, 1, True),  # 256*9*16 = 36864 direct vs 256*16 + 16*9*16 = 6400 as taps
        (256, 3, 3, 1, True),  # 36864 vs 256*32 + 32*9*16 = 12800
        (256, 40, 3, 1, False),  # 40 outputs: 360 taps cost more than the 48 padded outputs
        (16, 1, 3, 1, False),  # 2304 vs 256 + 2304
        (256, 1, 1, 1, False),  # a 1x1 convolution has one tap
        (256, 1, 3, 2, False),  # strided
    ],
)
def test_tap_conv_applies_where_it_is_cheaper(cin, cout, kernel, stride, expected):
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)
    assert TapConv2d.applies_to(conv) is expected
    assert not TapConv2d.applies_to(nn.Conv2d(256, 1, 3, padding=0))  # not "same"
    assert not TapConv2d.applies_to(nn.ReLU())


@pytest.mark.parametrize("depthwise", [False, True])
def test_sum_first_crp_equals_the_crp(depthwise):
    torch.manual_seed(0)
    crp = ChainedResidualPool(16, stages=4, depthwise=depthwise).eval()
    x = torch.randn(2, 16, 11, 14)
    with torch.no_grad():
        assert rel_diff(SumFirstChainedResidualPool(crp)(x), crp(x)) < 1e-6


def test_channel_identity_relu6_is_exact():
    x = torch.randn(2, 8, 5, 7) * 10
    x[0, 0, 0, :3] = torch.tensor([float("inf"), float("-inf"), -0.0])
    assert torch.equal(ChannelIdentityReLU6(8)(x), F.relu6(x))


def test_replace_modules_counts_and_replaces_nested():
    net = nn.Sequential(nn.ReLU(), nn.Sequential(nn.ReLU(), nn.Tanh()))
    assert replace_modules(net, lambda m: nn.ReLU6() if type(m) is nn.ReLU else None) == 2
    assert [type(m) for m in net.modules()].count(nn.ReLU6) == 2 and isinstance(net[1][1], nn.Tanh)
