"""The fast inference path: same outputs as the plain model, exact pieces, no side effects."""

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from support import ALL_KINDS_TASKS, tiny_config
from torch import nn

import hydranet
from hydranet.errors import ConfigError
from hydranet.inference.fast import (
    ChannelScale,
    CudaGraphRunner,
    FastModel,
    SeparableMaxPool2d,
    fold_batchnorm,
    optimize_for_inference,
    separable_max_pool2d,
)
from hydranet.inference.rewrites import TapConv2d

CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_thread")


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine terms, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=gen) * 0.4 - 0.2)
    return model


def build(decoder="lightweight", encoder="mobilenet_v2", tasks=None):
    torch.manual_seed(0)
    return randomize_batchnorm(hydranet.build_model(tiny_config(decoder, encoder, tasks))).eval()


def build_metric_depth():
    """The tiny model with a depth head in metres (bias 2 m): a random head's output is
    ~1e-3 and cancels, so a relative tolerance would measure noise, not precision."""
    model = build()
    with torch.no_grad():
        model.heads["depth"][2].bias.fill_(2.0)
    return model


def assert_close_rel(got: dict, ref: dict, tol: float = 1e-4):
    assert list(got) == list(ref)
    for name in ref:
        assert got[name].shape == ref[name].shape, name
        assert got[name].dtype == torch.float32, name
        scale = ref[name].abs().max().clamp_min(1e-12)
        rel = float((got[name] - ref[name]).abs().max() / scale)
        assert rel <= tol, f"{name}: relative difference {rel:.3g} > {tol}"


def plain(model, x, upsample=True):
    with torch.no_grad():
        return model(x, upsample=upsample)


@pytest.mark.parametrize("decoder", ["lightweight", "refinenet"])
@pytest.mark.parametrize("encoder", ["mobilenet_v2", "mtrn_mobilenet_v2", "resnet18"])
def test_default_path_equals_plain_model(decoder, encoder):
    model = build(decoder, encoder)
    fast = optimize_for_inference(model)
    x = torch.randn(2, 3, 97, 130)
    assert_close_rel(fast(x), plain(model, x))
    assert_close_rel(fast(x, upsample=False), plain(model, x, upsample=False))
    assert fast.report["folded_batchnorms"] == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.model.modules())
    if decoder == "lightweight":
        assert fast.report["channel_scales"] > 0  # the last CRP's per-channel convs and the dense heads
    assert any(isinstance(m, SeparableMaxPool2d) for m in fast.model.modules())


def test_few_output_heads_become_tap_convolutions():
    """Wide enough for taps to pay (width 48): depth and normals heads, not segmentation."""
    torch.manual_seed(0)
    model = randomize_batchnorm(hydranet.build_model(tiny_config(width=48))).eval()
    with torch.no_grad():
        model.heads["depth"][2].bias.fill_(2.0)  # metric depth, see build_metric_depth
    fast = optimize_for_inference(model)
    assert fast.report["tap_convs"] == 2
    assert {name for name, m in fast.model.named_modules() if isinstance(m, TapConv2d)} == {
        "heads.depth.2",
        "heads.normals.2",
    }
    x = torch.randn(2, 3, 97, 130)
    assert_close_rel(fast(x), plain(model, x), tol=1e-5)
    assert optimize_for_inference(build()).report["tap_convs"] == 0  # width 16: no gain


def _rewrites_present(fast) -> dict:
    """Which rewrites a FastModel's network holds (read from its modules and memory format)."""
    from hydranet.inference.rewrites import ChannelScale, SeparableMaxPool2d, TapConv2d

    modules = list(fast.model.modules())
    conv = next(m for m in modules if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    return {
        "channels_last": conv.weight.is_contiguous(memory_format=torch.channels_last),
        "fold_bn": not any(isinstance(m, nn.BatchNorm2d) for m in modules),
        "fast_pool": any(isinstance(m, SeparableMaxPool2d) for m in modules),
        "fast_depthwise": any(isinstance(m, ChannelScale) for m in modules),
        "tap_convs": any(isinstance(m, TapConv2d) for m in modules),
    }


@pytest.mark.parametrize("switch", ["channels_last", "fold_bn", "fast_pool", "fast_depthwise", "tap_convs"])
def test_each_rewrite_can_be_switched_off(switch):
    torch.manual_seed(0)
    model = randomize_batchnorm(hydranet.build_model(tiny_config(width=48))).eval()  # wide enough for taps
    x = torch.randn(1, 3, 64, 64)
    assert all(_rewrites_present(optimize_for_inference(model)).values())  # all on by default
    fast = optimize_for_inference(model, **{switch: False})
    present = _rewrites_present(fast)
    assert not present[switch] and all(v for k, v in present.items() if k != switch), present
    assert_close_rel(fast(x), plain(model, x))


def test_dense_task_subsets_and_image_level_only():
    x = torch.randn(1, 3, 64, 64)
    for tasks in ([ALL_KINDS_TASKS[1]], [ALL_KINDS_TASKS[3], ALL_KINDS_TASKS[4]]):
        model = build(tasks=tasks)
        assert_close_rel(optimize_for_inference(model)(x), plain(model, x))


@pytest.mark.parametrize("encoder", ["mobilenet_v2", "mtrn_mobilenet_v2", "resnet18"])
def test_batchnorm_folding_alone(encoder):
    model = build("lightweight", encoder)
    folded = copy.deepcopy(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(folded) == n_bn > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 97, 130)
    assert_close_rel(plain(folded, x), plain(model, x), tol=1e-4)  # fp32 rounding only


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("tile_bytes", [None, 1, 4096, 2 << 20])
def test_separable_pool_is_bit_identical(channels_last, tile_bytes):
    gen = torch.Generator().manual_seed(1)
    for shape in [(2, 16, 97, 130), (1, 3, 7, 5), (1, 4, 1, 1), (3, 8, 25, 33)]:
        x = torch.randn(shape, generator=gen)
        x.view(-1)[0] = float("inf")
        x.view(-1)[-1] = float("-inf")
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for k in (2, 3, 5):
            for p in range(k // 2 + 1):
                if x.shape[-1] + 2 * p < k or x.shape[-2] + 2 * p < k:
                    continue
                ref = F.max_pool2d(x, k, 1, p)
                got = separable_max_pool2d(x, k, p, tile_bytes)
                assert torch.equal(got, ref), (shape, k, p)
                if channels_last and min(shape[1:]) > 1:  # (N, C, 1, 1) is both formats at once
                    assert got.is_contiguous(memory_format=torch.channels_last)


def test_separable_pool_module_replaces_maxpool():
    pool = nn.MaxPool2d(5, stride=1, padding=2)
    fast = SeparableMaxPool2d.from_pool(pool)
    x = torch.randn(1, 32, 121, 160).contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast(x), pool(x))
    with pytest.raises(ValueError):
        SeparableMaxPool2d.from_pool(nn.MaxPool2d(3, stride=2, padding=1))


def test_channel_scale_equals_depthwise_conv():
    for bias in (False, True):
        conv = nn.Conv2d(24, 24, 1, groups=24, bias=bias)
        assert ChannelScale.applies_to(conv)
        scale = ChannelScale.from_conv(conv)
        x = torch.randn(2, 24, 31, 17)
        with torch.no_grad():
            torch.testing.assert_close(scale(x), conv(x), rtol=1e-6, atol=1e-7)
    assert not ChannelScale.applies_to(nn.Conv2d(24, 24, 3, padding=1, groups=24))
    assert not ChannelScale.applies_to(nn.Conv2d(24, 24, 1))


def test_input_model_is_not_mutated():
    model = build()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modules_before = [type(m) for m in model.modules()]
    fast = optimize_for_inference(model)
    fast(torch.randn(1, 3, 64, 64))
    assert model.training
    assert [type(m) for m in model.modules()] == modules_before
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad for p in model.parameters())
    assert all(p.is_contiguous() for p in model.parameters())


def test_fast_model_interface():
    model = build()
    fast = optimize_for_inference(model)
    assert isinstance(fast, FastModel) and not fast.training
    assert fast.task_names == model.task_names and fast.tasks == model.tasks and fast.config == model.config
    out = fast(torch.randn(1, 3, 64, 64).double())  # any input dtype: converted to the model's
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in out.values())
    with pytest.raises(RuntimeError):
        fast.train()
    fast.eval()


def test_unavailable_device_and_dtype_are_clear_errors():
    model = build()
    from hydranet.inference.fast import cpu_reduced_precision_unsupported

    for dtype in (torch.float16, torch.bfloat16):
        if cpu_reduced_precision_unsupported(dtype):
            with pytest.raises(ConfigError, match="native"):
                optimize_for_inference(model, dtype=dtype)
    with pytest.raises(ConfigError):
        optimize_for_inference(model, dtype=torch.int8)
    if not CUDA:
        with pytest.raises(ConfigError, match="CUDA"):
            optimize_for_inference(model, device="cuda")
        with pytest.raises(RuntimeError, match="CUDA"):
            CudaGraphRunner(optimize_for_inference(model), torch.randn(1, 3, 64, 64))


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_path_and_reduced_precision(dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("no bfloat16 on this GPU")
    model = build_metric_depth()
    x = torch.randn(2, 3, 97, 130)
    ref = plain(model, x)
    out = optimize_for_inference(model, device="cuda", dtype=dtype)(x.cuda())
    tol = 1e-4 if dtype == torch.float32 else 5e-2
    assert_close_rel({k: v.cpu() for k, v in out.items()}, ref, tol=tol)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_graph_runner_replays_and_clones():
    model = build()
    fast = optimize_for_inference(model, device="cuda")
    x1, x2 = torch.randn(1, 3, 64, 96, device="cuda"), torch.randn(1, 3, 64, 96, device="cuda")
    runner = CudaGraphRunner(fast, x1)
    out1 = runner(x1)
    out2 = runner(x2)
    assert_close_rel({k: v.cpu() for k, v in out1.items()}, {k: v.cpu() for k, v in fast(x1).items()}, tol=1e-5)
    assert_close_rel({k: v.cpu() for k, v in out2.items()}, {k: v.cpu() for k, v in fast(x2).items()}, tol=1e-5)
    assert not torch.equal(out1["segm"], out2["segm"])  # the first result survived the second replay
    with pytest.raises(ValueError):
        runner(torch.randn(1, 3, 64, 64, device="cuda"))


@pytest.mark.skipif(
    not any(shutil.which(c) for c in ("c++", "g++", "clang++")), reason="torch.compile needs a C++ compiler"
)
def test_compile_option_matches_plain_model():
    model = build()
    fast = optimize_for_inference(model, compile=True)
    assert fast.report["compile"] and not fast.report["fast_pool"]
    x = torch.randn(2, 3, 97, 130)
    assert_close_rel(fast(x), plain(model, x))


def test_bfloat16_on_cpu_when_supported():
    from hydranet.inference.fast import cpu_reduced_precision_unsupported

    if cpu_reduced_precision_unsupported(torch.bfloat16):
        pytest.skip("no native bfloat16 kernels on this CPU")
    model = build_metric_depth()
    x = torch.randn(2, 3, 97, 130)
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    assert fast.dtype == torch.bfloat16
    assert_close_rel(fast(x), plain(model, x), tol=5e-2)


def test_batchnorm_folding_of_bottleneck_resnets():
    """resnet50: Bottleneck blocks (conv1..conv3/bn1..bn3) and downsample paths, found by tracing."""
    model = build("lightweight", "resnet50", tasks=[ALL_KINDS_TASKS[0]])
    folded = copy.deepcopy(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert fold_batchnorm(folded) == n_bn == 53
    x = torch.randn(1, 3, 64, 64)
    assert_close_rel(plain(folded, x), plain(model, x), tol=1e-4)


class _SharedConvOutput(nn.Module):
    """conv -> bn, but the conv output is also added back: folding would change the sum."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.bn2 = nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y + self.bn2(self.conv2(x))


class _DataDependent(nn.Module):
    """Control flow on values: not traceable as a whole, its children still fold."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.other = _SharedConvOutput()

    def forward(self, x):
        if x.mean() > 0:
            return self.inner(x)
        return self.other(x)


class _BNWithActivation(nn.BatchNorm2d):
    """A BatchNorm subclass that does more (as timm's BatchNormAct2d): never folded away."""

    def forward(self, x):
        return torch.relu(super().forward(x))


def test_batchnorm_folding_only_where_it_is_exact():
    model = randomize_batchnorm(_DataDependent()).eval()
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded) == 2  # inner's pair and other.conv2/bn2, not other.conv/bn
    assert isinstance(folded.other.bn, nn.BatchNorm2d) and isinstance(folded.other.bn2, nn.Identity)
    for sign in (1, -1):
        x = sign * (torch.rand(2, 4, 9, 9) + 0.1)
        with torch.no_grad():
            assert_close_rel({"y": folded(x)}, {"y": model(x)}, tol=1e-5)
    act = nn.Sequential(nn.Conv2d(4, 4, 1), _BNWithActivation(4)).eval()
    assert fold_batchnorm(act) == 0
