"""The fast inference path every front end uses by default.

    fast = hydranet.inference.fast.optimize_for_inference(model)            # CPU, fp32, exact
    outputs = fast(images)                                        # {task: tensor}, like model(images)
    fast = optimize_for_inference(model, device="cuda", dtype=torch.float16)
    runner = CudaGraphRunner(fast, example)                       # fixed input size on CUDA

:func:`optimize_for_inference` returns an eval-mode copy (the caller's model is never
touched) with the same forward signature and dict output, rewritten as follows; every
step keeps fp32 outputs equal to the plain model's within rounding (see
``tests/test_fast.py``):

* **BatchNorm folded** into the preceding convolution (pairs found in a ``torch.fx`` trace,
  whatever the encoder: MobileNets, EfficientNet, ResNet blocks, timm convnets).
* **channels_last** weights and input: MKL-DNN convolutions run without layout reorders,
  and pooling and bilinear upsampling get their vectorised channels-last kernels.
* **Exact fast max pooling** in the chained residual pools (``nn.MaxPool2d(5, 1, 2)``,
  16 calls in the light-weight decoder, 76% of the plain model's CPU time). A k x k
  max with stride 1 and -inf padding is separable, and a window of 5 is the max of a
  window of 4 and one element, a window of 4 the max of two windows of 2: six elementwise
  ``torch.maximum`` over shifted views replace PyTorch's CPU kernel (which also writes
  int64 indices), computed band by band so the intermediates stay in the caches. The
  result is bit-identical (max is exact). On CUDA the native kernel is kept.
* **Per-channel 1x1 convolutions** (``groups == channels``: the last CRP block and the
  first layer of each dense head) become a broadcast multiply, the same single product
  per element (the last CRP stage multiplies and adds in one ``addcmul_``).
* **Few-output heads as taps** (on CPU): the 3x3 convolution of the depth (and normals)
  head, 256 -> 1 channel, is padded to 16 outputs by MKL-DNN; as
  :class:`~hydranet.inference.rewrites.TapConv2d` (1x1 to 9 taps, then a fixed 3x3 shift-and-sum)
  it costs a quarter (sums in another order: ~1e-6 relative).
* In-place residual sums in the chained residual pools, and ``torch.inference_mode``.
* On CPU with ``tune_allocator=True`` (the command-line tools' choice; process-wide, so
  off by default), :func:`tune_cpu_allocator`: freed blocks are kept for reuse instead of
  being unmapped, which saves the page faults of every large tensor.

Measured on a 2-core CPU at 640x480 (``docs/benchmarks.md``): the plain model spends 76%
of its time in ``nn.MaxPool2d`` on NCHW tensors; channels_last alone makes it about 4.5x
faster, the banded separable pooling takes it to about 6x; BN folding alone is worth ~1%.

On CUDA, ``dtype=torch.float16`` or ``torch.bfloat16`` converts weights and input (outputs
come back as float32; bfloat16 also on CPUs with native bf16 kernels), and
:class:`CudaGraphRunner` replays the whole network as one CUDA graph for a fixed input
size. ``compile=True`` (or a mode string) wraps the network in ``torch.compile``.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional, Union

import torch
from torch import nn

from ..errors import ConfigError
from ..models.refinenet import ChainedResidualPool
from .rewrites import (
    ChannelScale,
    FastChainedResidualPool,
    SeparableMaxPool2d,
    TapConv2d,
    replace_modules,
    separable_max_pool2d,
)

__all__ = [
    "optimize_for_inference",
    "FastModel",
    "CudaGraphRunner",
    "fold_batchnorm",
    "tune_cpu_allocator",
    "cpu_reduced_precision_unsupported",
    "fuse_conv_bn",
    "SeparableMaxPool2d",
    "ChannelScale",
    "FastChainedResidualPool",
    "separable_max_pool2d",
]

DeviceLike = Union[str, torch.device]


# --- BatchNorm folding ----------------------------------------------------------------


def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new convolution computing ``bn(conv(x))`` (eval-mode BN statistics).

    The scale ``gamma / sqrt(var + eps)`` is computed in float64, so the folded weights
    differ from the two-step computation by fp32 rounding only.
    """
    if not bn.track_running_stats or bn.running_mean is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        w = conv.weight.double()
        b = (
            conv.bias.double()
            if conv.bias is not None
            else torch.zeros(conv.out_channels, dtype=torch.float64, device=w.device)
        )
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        fused.weight.copy_(w * scale.view(-1, 1, 1, 1))
        fused.bias.copy_(b * scale + shift)
    fused.train(conv.training)
    return fused


def _is_conv_bn(a: nn.Module, b: nn.Module) -> bool:
    # Exact types: subclasses may do more in forward (timm's BatchNormAct2d adds an activation).
    return (
        type(a) is nn.Conv2d
        and type(b) is nn.BatchNorm2d
        and b.num_features == a.out_channels
        and b.track_running_stats
        and b.running_mean is not None
    )


def _traced_pairs(module: nn.Module) -> Optional[list[tuple[str, str]]]:
    """``(conv, bn)`` submodule names where ``bn`` is applied to ``conv``'s output and nothing
    else reads that output, from a ``torch.fx`` trace of ``module``; None when it does not trace."""
    import torch.fx

    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:  # data-dependent control flow, non-tensor inputs, untraceable ops
        return None
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        if (
            calls[node.target] == 1
            and calls[src.target] == 1
            and _is_conv_bn(module.get_submodule(src.target), module.get_submodule(node.target))
        ):
            pairs.append((src.target, node.target))
    return pairs


def _conv_bn_pairs(module: nn.Module, prefix: str = "") -> list[tuple[str, str]]:
    """The foldable pairs of ``module``: traced as a whole, or child by child where it does not trace."""
    if not any(type(m) is nn.BatchNorm2d for m in module.modules()):
        return []
    pairs = _traced_pairs(module)
    if pairs is not None:
        return [(prefix + a, prefix + b) for a, b in pairs]
    found = []
    for name, child in module.named_children():
        found += _conv_bn_pairs(child, f"{prefix}{name}.")
    return found


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution, in place.

    The pairs are found in a ``torch.fx`` trace: a ``BatchNorm2d`` applied to the output of a
    ``Conv2d`` that nothing else reads, each called once (MobileNets, EfficientNets, ResNet
    blocks, stems and downsample paths, timm convnets with plain BatchNorm2d). Modules that do
    not trace (data-dependent control flow) are searched child by child. The BatchNorm is
    replaced by ``nn.Identity``. Returns the number of folded pairs; a BatchNorm elsewhere
    is left as it is (still correct, just not folded); LayerNorm models have nothing to fold.
    """
    pairs = _conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        model.set_submodule(conv_name, fuse_conv_bn(conv, bn))
        model.set_submodule(bn_name, nn.Identity())
    return len(pairs)


# --- the CPU allocator -----------------------------------------------------------------------

_ALLOCATOR_TUNED: Optional[bool] = None


def tune_cpu_allocator() -> bool:
    """Keep freed memory for reuse instead of returning it to the OS (glibc, process-wide).

    glibc serves large blocks with ``mmap`` and gives them back on ``free``, so every
    large tensor of every forward pass is a fresh mapping whose pages the kernel must
    fault in and zero. Measured here: 26k page faults and 40-50 ms of system time per
    640x480 frame (a third of the fast path's time) in a plain process, and 260k faults,
    0.5 s of system time per batch of 4 (the fast path went from 683 to 357 ms without
    them). Serving every block from the heap (no mmap; glibc's 32 MiB mmap threshold
    alone leaves the larger maps of a batch mapped afresh) and switching heap trimming
    off makes freed blocks come back already mapped. The cost: the process keeps its
    peak memory, as PyTorch's CUDA caching allocator does on GPU (jemalloc or tcmalloc,
    preloaded, are the usual alternatives). Safe to call more than once; returns True
    when the allocator was tuned (False off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    try:
        import ctypes
        import ctypes.util
        import platform

        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold, m_mmap_max = -1, -2, -3, -4  # from malloc.h
        ok = libc.mallopt(m_mmap_threshold, 32 << 20) == 1
        ok &= libc.mallopt(m_mmap_max, 0) == 1  # no mmap at all: blocks above 32 MiB come from the heap too
        ok &= libc.mallopt(m_trim_threshold, 1 << 30) == 1
        ok &= libc.mallopt(m_top_pad, 64 << 20) == 1
        _ALLOCATOR_TUNED = bool(ok)
    except (OSError, AttributeError):
        pass
    return _ALLOCATOR_TUNED


# --- the optimised model --------------------------------------------------------------------


class FastModel(nn.Module):
    """An inference-only copy of a HydraNet, made by :func:`optimize_for_inference`.

    ``fast(images, upsample=True)`` takes what the model takes (float ``N x 3 x H x W``,
    ImageNet-normalised RGB, on any device: it is moved to ``fast.device``) and returns
    ``{task: tensor}`` in float32, on ``fast.device``. ``fast.model`` is the rewritten
    network; ``fast.report`` says what was changed. With ``channels_last`` the dense outputs
    are channels-last strided (same shape and values): call ``.contiguous()`` before
    ``.view()`` if NCHW memory is needed.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        report: dict,
        compiled: Optional[Callable] = None,
    ):
        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.channels_last = channels_last
        self.report = report
        # Not registered as a submodule: a compiled wrapper would duplicate the parameters.
        object.__setattr__(self, "_run", compiled if compiled is not None else model)
        super().train(False)

    # The attributes front ends read from a HydraNet.
    @property
    def tasks(self):
        return self.model.tasks

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.model.tasks]

    @property
    def config(self) -> dict:
        return self.model.config

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` on the model's device, dtype and memory format."""
        images = images.to(self.device, self.dtype, non_blocking=True)
        if self.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def forward(self, images: torch.Tensor, upsample: bool = True) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            outputs = self._run(self.prepare(images), upsample)
            if self.dtype != torch.float32:
                outputs = {k: v.float() for k, v in outputs.items()}
        return outputs

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a FastModel is for inference only; train the original model")
        return super().train(False)


def cpu_reduced_precision_unsupported(dtype: torch.dtype) -> Optional[str]:
    """Why ``dtype`` convolutions are not worth running on this CPU, or None when they are.

    bfloat16 needs AVX512-BF16 or AMX (oneDNN's native bf16 kernels: about 20% faster than
    fp32 on the 2-core AMD EPYC of docs/benchmarks.md); float16 needs AVX512-FP16 or AMX-FP16
    (without, PyTorch falls back to reference kernels: 18x slower than fp32 there).
    """
    if dtype == torch.bfloat16:
        ok, name = torch.ops.mkldnn._is_mkldnn_bf16_supported(), "AVX512-BF16/AMX"
    elif dtype == torch.float16:
        ok, name = torch.ops.mkldnn._is_mkldnn_fp16_supported(), "AVX512-FP16/AMX-FP16"
    else:
        return None
    if ok:
        return None
    return (
        f"this CPU has no native {str(dtype).replace('torch.', '')} convolutions ({name}); "
        "PyTorch would fall back to reference kernels many times slower than float32"
    )


def optimize_for_inference(
    model: nn.Module,
    device: DeviceLike = "cpu",
    dtype: Optional[torch.dtype] = None,
    channels_last: bool = True,
    fold_bn: bool = True,
    fast_pool: bool = True,
    fast_depthwise: bool = True,
    tap_convs: bool = True,
    compile: Union[bool, str] = False,
    tune_allocator: bool = False,
) -> FastModel:
    """An inference-optimised copy of ``model`` (a HydraNet); ``model`` itself is not changed.

    Args:
        model: the network (any HydraNet; train or eval mode, any device).
        device: where the copy runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a ``torch.device``).
        dtype: ``None`` / ``torch.float32`` (exact), or ``torch.float16`` / ``torch.bfloat16``
            (reduced precision: on CUDA, and on CPUs with native kernels for it, see
            :func:`cpu_reduced_precision_unsupported`). Outputs are returned as float32.
        channels_last: convert weights and inputs to the channels-last memory format.
        fold_bn: fold BatchNorm into the preceding convolutions.
        fast_pool: exact separable max pooling in the chained residual pools (on CPU).
        fast_depthwise: per-channel 1x1 convolutions as broadcast multiplies.
        tap_convs: on CPU, few-output 3x3 convolutions (depth, normals heads) as
            :class:`~hydranet.inference.rewrites.TapConv2d` (~1e-6 relative difference).
        compile: ``False``, ``True`` (``torch.compile`` with Inductor's weight freezing) or a
            ``torch.compile`` mode such as ``"max-autotune"`` or ``"reduce-overhead"``. The
            input size is fixed per compilation (a new size recompiles); ``fast_pool`` is
            ignored (Inductor writes its own pooling code).
        tune_allocator: on CPU, call :func:`tune_cpu_allocator` (process-wide: freed memory
            is kept for reuse, which saves the page faults of every large tensor).

    Returns:
        A :class:`FastModel`: ``fast(images, upsample=True) -> {task: tensor}``.
    """
    device = torch.device(device)
    dtype = _checked_precision(device, dtype or torch.float32)
    net = copy.deepcopy(model).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    report = {"device": str(device), "dtype": str(dtype).replace("torch.", ""), "channels_last": channels_last}
    report["folded_batchnorms"] = fold_batchnorm(net) if fold_bn else 0
    report["allocator_tuned"] = tune_cpu_allocator() if tune_allocator and device.type == "cpu" else False
    if compile:
        fast_pool = False  # Inductor generates its own pooling loops (and cannot trace the banded one)
    report.update(_rewrite_layers(net, fast_pool, fast_depthwise, tap_convs and device.type == "cpu"))

    net = net.to(device=device, dtype=dtype)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)

    compiled = None
    if compile:
        if compile is True:
            # Freezing: weights become constants, so Inductor prepacks them for MKL-DNN and
            # folds what it can (measured 25% faster than without on this CPU).
            compiled = torch.compile(net, dynamic=False, options={"freezing": True})
            report["compile"] = "default, freezing"
        else:
            compiled = torch.compile(net, mode=str(compile), dynamic=False)
            report["compile"] = str(compile)
    return FastModel(net, device, dtype, channels_last, report, compiled)


def _checked_precision(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """``dtype``, or a ConfigError when ``device`` is absent or cannot run it."""
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device}: CUDA is not available on this machine (use cpu)")
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ConfigError(f"dtype {dtype}: use float32, float16 or bfloat16")
    if dtype != torch.float32 and device.type != "cuda":
        reason = cpu_reduced_precision_unsupported(dtype) if device.type == "cpu" else "not supported"
        if reason:
            raise ConfigError(f"dtype {str(dtype).replace('torch.', '')} on {device.type}: {reason}; use float32")
    return dtype


def _rewrite_layers(net: nn.Module, fast_pool: bool, fast_depthwise: bool, tap_convs: bool) -> dict:
    """Replace ``net``'s layers by their equivalent faster forms, in place; what was replaced."""

    def channel_scale(m: nn.Module) -> Optional[nn.Module]:
        return ChannelScale.from_conv(m) if ChannelScale.applies_to(m) else None

    def tap_conv(m: nn.Module) -> Optional[nn.Module]:
        return TapConv2d(m) if TapConv2d.applies_to(m) else None

    def fast_crp(m: nn.Module) -> Optional[nn.Module]:
        if not isinstance(m, ChainedResidualPool):
            return None
        pool = m.pool
        if fast_pool and isinstance(pool, nn.MaxPool2d):
            try:
                pool = SeparableMaxPool2d.from_pool(pool)
            except ValueError:
                pass
        return FastChainedResidualPool(m, pool)

    # Channel scales first (they live inside the CRPs), then the CRPs themselves.
    report = {"channel_scales": replace_modules(net, channel_scale) if fast_depthwise else 0}
    report["fast_crps"] = replace_modules(net, fast_crp) if (fast_pool or fast_depthwise) else 0
    report["fast_pool"] = bool(fast_pool)
    report["tap_convs"] = replace_modules(net, tap_conv) if tap_convs else 0
    return report


# --- CUDA graphs -------------------------------------------------------------------------------


class CudaGraphRunner:
    """Replay a model as one CUDA graph for a fixed input shape.

    ``runner = CudaGraphRunner(model, example)`` captures ``model(example)`` (any callable
    returning a dict of tensors, e.g. a :class:`FastModel` or a HydraNet on CUDA);
    ``runner(images)`` copies ``images`` into the static input buffer, replays the graph and
    returns clones of the static outputs (so they survive the next replay; pass
    ``clone=False`` to get the static buffers themselves). Inputs of another shape raise
    ``ValueError``: capture one runner per size.
    """

    def __init__(self, model: Callable, example: torch.Tensor, warmup: int = 3, upsample: bool = True):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA graphs need CUDA, which is not available on this machine")
        inner = model
        dtype, channels_last = example.dtype, False
        if isinstance(model, FastModel):  # capture the network itself, with the input already prepared
            inner, dtype, channels_last = model._run, model.dtype, model.channels_last
            device = model.device
        else:
            device = next(iter(model.parameters())).device if isinstance(model, nn.Module) else example.device
        if device.type != "cuda":
            raise RuntimeError(f"CUDA graphs need a model on CUDA, this one is on {device}")
        self.shape = tuple(example.shape)
        self.static_input = torch.empty(self.shape, device=device, dtype=dtype)
        if channels_last:
            self.static_input = self.static_input.contiguous(memory_format=torch.channels_last)
        self.static_input.copy_(example)
        self._float_out = dtype != torch.float32

        def step():
            out = inner(self.static_input, upsample)
            return {k: (v.float() if self._float_out else v) for k, v in out.items()}

        with torch.inference_mode():
            stream = torch.cuda.Stream(device=device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream):
                for _ in range(max(1, warmup)):
                    step()
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_outputs = step()
        torch.cuda.synchronize(device)
        self.device = device

    def __call__(self, images: torch.Tensor, clone: bool = True) -> dict[str, torch.Tensor]:
        if tuple(images.shape) != self.shape:
            raise ValueError(f"this CUDA graph was captured for input {self.shape}, got {tuple(images.shape)}")
        with torch.inference_mode():
            self.static_input.copy_(images, non_blocking=True)
            self.graph.replay()
            if not clone:
                return self.static_outputs
            return {k: v.clone() for k, v in self.static_outputs.items()}
