"""Export a HydraNet to ONNX or TorchScript, and check the exported file against PyTorch.

    report = export_onnx(model, "model.onnx")            # opset 18, dynamic batch and size
    report = export_torchscript(model, "model.pt")
    print(format_check(report["check"]))

ONNX files carry the model's config as JSON in their metadata (key ``hydranet_config``), so
:mod:`hydranet.inference.onnx_model` and ``hydranet eval`` know the tasks from the file alone.
ONNX files have one input, ``image`` (float ``N x 3 x H x W``, ImageNet-normalised RGB,
batch, height and width dynamic), and one output per task, named after the task, in task
order. They are made with PyTorch's ``torch.export``-based exporter, whose bilinear
``Resize`` uses ``coordinate_transformation_mode=half_pixel`` (the same sampling as PyTorch's
``align_corners=False``; the legacy exporter's ``pytorch_half_pixel`` makes onnxruntime
reorder layouts around every Resize). BatchNorm is folded before export (exact up to fp32
rounding), so the graph holds Conv, Clip, MaxPool, Add, Resize and the heads only.
By default a few layers are written in equivalent forms that onnxruntime runs faster
(:mod:`hydranet.inference.rewrites`: chain-first residual pools, the depth/normals heads as taps,
the decoder's ReLU6 behind an identity convolution; ~1e-6 relative difference, together
about 10% faster at 640x480); ``runtime_forms=False`` writes the layers as they are.
``static=True`` fixes batch and size (about 10% faster again).

TorchScript files are ``torch.jit.trace`` of the same network returning ``{task: tensor}``;
sizes are traced symbolically, so one file serves any input size. Load one with
``torch.jit.load(path)``.

Both exporters check the file after writing it: random inputs at two sizes (the export size
and an odd one) go through the file (onnxruntime for ONNX) and through PyTorch, and the
largest absolute and relative difference per task is reported.
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import nn

from ..config import parse_size
from ..data.io import output_error, writable_file
from ..errors import ConfigError
from ..models.refinenet import ChainedResidualPool, LightRefineNet
from .fast import FastModel, fold_batchnorm
from .onnx_integrity import stamp_hash
from .rewrites import ChannelIdentityReLU6, SumFirstChainedResidualPool, TapConv2d, replace_modules

__all__ = [
    "export_onnx",
    "export_torchscript",
    "check_onnx",
    "check_torchscript",
    "onnx_session",
    "onnx_runner",
    "TaskTuple",
    "format_check",
    "DEFAULT_OPSET",
    "MIN_SIZE",
    "CONFIG_METADATA_KEY",
]

DEFAULT_OPSET = 18  # the torch.export-based exporter's own opset; 17 is converted down from it
MIN_SIZE = 32  # smallest height/width the exported graph is declared for
CONFIG_METADATA_KEY = "hydranet_config"  # ONNX metadata entry holding the model's config (JSON)


class TaskTuple(nn.Module):
    """``model(image)`` as a tuple in task order (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.task_names = list(model.task_names)

    def forward(self, image: torch.Tensor):
        out = self.model(image)
        return tuple(out[name] for name in self.task_names)


class TaskDict(nn.Module):
    """``model(image)`` with a single argument (``torch.jit.trace`` traces positional inputs only)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model(image)


def _export_copy(model: nn.Module, runtime_forms: bool = False) -> nn.Module:
    """An fp32 CPU eval copy with BatchNorm folded (the caller's model is left alone).

    ``runtime_forms`` swaps in the equivalent layers of :mod:`hydranet.inference.rewrites` that
    onnxruntime runs faster (chain-first residual pools, few-output heads as taps, the
    decoder's ReLU6 behind an identity per-channel convolution).
    """

    if isinstance(model, FastModel):
        raise ConfigError("export the original model, not a FastModel (its CPU-only rewrites do not export)")
    net = copy.deepcopy(model).float().cpu().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    fold_batchnorm(net)
    if runtime_forms:
        replace_modules(net, lambda m: SumFirstChainedResidualPool(m) if isinstance(m, ChainedResidualPool) else None)
        replace_modules(net, lambda m: TapConv2d(m) if TapConv2d.applies_to(m) else None)
        for decoder in [m for m in net.modules() if isinstance(m, LightRefineNet)]:
            channels = decoder.out_channels  # the decoder's sums are all at its width
            replace_modules(decoder, lambda m, c=channels: ChannelIdentityReLU6(c) if isinstance(m, nn.ReLU6) else None)
    return net


def _check_sizes(size: tuple[int, int], check_sizes: Optional[Sequence[tuple[int, int]]]) -> list[tuple[int, int]]:
    if check_sizes:
        return [tuple(s) for s in check_sizes]
    h, w = size
    return [(h, w), (max(MIN_SIZE, h // 2 + 1), max(MIN_SIZE, w // 2 + 3))]  # the second one odd-sized


def _validate_size(size) -> tuple[int, int]:
    return parse_size(size, minimum=MIN_SIZE, what="export size")


def _difference(ref: torch.Tensor, got: torch.Tensor) -> dict:
    ref, got = ref.double(), got.double()
    diff = float((ref - got).abs().max()) if ref.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return {"abs": diff, "rel": diff / scale if scale > 0 else diff}


def _compare(
    reference: nn.Module, run, task_names: list[str], sizes, batch: int, seed: int, vary_batch: bool = True
) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    results = []
    for i, (h, w) in enumerate(sizes):
        n = batch + i if vary_batch else batch  # the batch varies too: it is dynamic
        x = torch.randn(n, 3, h, w, generator=gen)
        with torch.no_grad():
            ref = reference(x)
        got = run(x)
        if list(got) != task_names:
            raise RuntimeError(f"exported outputs {list(got)} differ from the tasks {task_names}")
        per_task = {name: _difference(ref[name], got[name]) for name in task_names}
        results.append(
            {
                "batch": n,
                "size": f"{w}x{h}",
                "tasks": per_task,
                "max_abs": max(d["abs"] for d in per_task.values()),
                "max_rel": max(d["rel"] for d in per_task.values()),
            }
        )
    return results


# --- ONNX -----------------------------------------------------------------------------------


def onnx_session(path, device: str = "cpu", threads: Optional[int] = None, spin: bool = True):
    """An onnxruntime session with all graph optimisations and ``threads`` intra-op threads.

    ``threads`` defaults to ``torch.get_num_threads()`` (the cores PyTorch uses). ``spin=False``
    lets onnxruntime's threads sleep as soon as a run ends instead of busy-waiting for the
    next: where PyTorch, OpenCV or an encoder works on the outputs between runs (the
    Predictor, eval), spinning threads take their cores (measured: a 320x240 int8 prediction
    in 14 ms instead of 25-28, the network alone unchanged). On a CUDA
    device the CUDA execution provider is used, and a clear error is raised without it;
    ``HYDRANET_ORT_TENSORRT=1`` puts the TensorRT provider in front of it.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if str(device).startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ConfigError("onnxruntime has no CUDA execution provider here (install onnxruntime-gpu)")
        index = torch.device(device).index or 0
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        if os.environ.get("HYDRANET_ORT_TENSORRT") == "1":  # opt-in: engines are built per input shape
            if "TensorrtExecutionProvider" not in ort.get_available_providers():
                raise ConfigError("HYDRANET_ORT_TENSORRT=1: onnxruntime has no TensorRT execution provider here")
            providers.insert(0, ("TensorrtExecutionProvider", {"device_id": index}))
    return ort.InferenceSession(str(path), opts, providers=providers)


def onnx_runner(session, task_names):
    """``run(images) -> {task: tensor}`` over an onnxruntime session (outputs on the CPU)."""

    def run(x: torch.Tensor) -> dict:
        outs = session.run(task_names, {"image": x.detach().float().cpu().contiguous().numpy()})
        return {name: torch.from_numpy(o) for name, o in zip(task_names, outs)}

    return run


def check_onnx(
    path,
    model: nn.Module,
    sizes: Sequence[tuple[int, int]] = ((480, 640), (241, 323)),
    batch: int = 1,
    seed: int = 0,
    vary_batch: bool = True,
) -> list[dict]:
    """Run the ONNX file in onnxruntime and ``model`` in PyTorch on the same random inputs.

    Returns one entry per size: ``{"batch", "size", "tasks": {task: {"abs", "rel"}}, "max_abs",
    "max_rel"}``; ``rel`` is the largest difference over the largest magnitude of PyTorch's output.
    """
    net = copy.deepcopy(model).float().cpu().eval()
    session = onnx_session(path, "cpu")
    names = [o.name for o in session.get_outputs()]
    if names != list(net.task_names):
        raise RuntimeError(f"{path}: outputs {names} are not the tasks {list(net.task_names)}")
    return _compare(net, onnx_runner(session, names), names, sizes, batch, seed, vary_batch)


def check_opset(opset) -> int:
    """The opset if this torch can write it (17 up to its exporter's maximum), else ConfigError."""
    from torch.onnx._constants import ONNX_MAX_OPSET

    if not isinstance(opset, int) or isinstance(opset, bool) or not 17 <= opset <= ONNX_MAX_OPSET:
        raise ConfigError(
            f"--opset {opset}: use 17 to {ONNX_MAX_OPSET} (17 and later for Resize and the "
            f"exporter; {ONNX_MAX_OPSET} is the newest this torch writes)"
        )
    return opset


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, path: Path):
    """Remove ``tmp`` if the block fails; an OSError becomes an OutputError naming ``path``."""
    try:
        yield
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from exc
        raise


def _export_dynamo(wrapped: nn.Module, example, names: list, tmp: Path, opset: int, static: bool, model) -> None:
    """Write ``tmp`` with the ``torch.export``-based exporter (opset 18 and later)."""
    # Declared from MIN_SIZE + 1: at 32 pixels a ViT's stride-32 map is a single pixel, a
    # case torch.export would otherwise make the graph specialise on. The range is not part
    # of the ONNX file (onnxruntime runs it at 32 too, see tests/test_encoders.py).
    dims = {
        0: torch.export.Dim("batch", min=1, max=1024),
        2: torch.export.Dim("height", min=MIN_SIZE + 1, max=8192),
        3: torch.export.Dim("width", min=MIN_SIZE + 1, max=8192),
    }
    try:
        program = torch.onnx.export(
            wrapped,
            (example,),
            None,
            input_names=["image"],
            output_names=names,
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=None if static else {"image": dims},
            external_data=False,
            verbose=False,
        )
    except Exception as exc:  # torch.export's errors have several types
        if static:
            raise
        h, w = example.shape[-2:]
        raise ConfigError(_static_only(model, h, w, str(exc).strip().splitlines()[0])) from exc
    program.save(str(tmp), external_data=False)


def _export_torchscript(wrapped: nn.Module, example, names: list, tmp: Path, opset: int, static: bool) -> None:
    """Write ``tmp`` with the TorchScript-based exporter: the torch.export-based one cannot
    convert its graph down to 17; this one writes 17 natively (and also uses half_pixel Resize)."""
    axes = {"image": {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch"} for name in names})
    torch.onnx.export(
        wrapped,
        (example,),
        str(tmp),
        input_names=["image"],
        output_names=names,
        opset_version=opset,
        dynamo=False,
        dynamic_axes=None if static else axes,
    )


def export_onnx(
    model: nn.Module,
    path,
    opset: int = DEFAULT_OPSET,
    size: tuple[int, int] = (480, 640),
    batch: int = 1,
    check: bool = True,
    check_sizes: Optional[Sequence[tuple[int, int]]] = None,
    static: bool = False,
    runtime_forms: bool = True,
) -> dict:
    """Write ``model`` as an ONNX file with dynamic batch, height and width.

    With ``static=True`` the file is fixed to ``batch x 3 x size``: every Resize then has
    constant sizes, which onnxruntime turns into its blocked-layout Upsample (about 10%
    faster here), at the price of one file per input size. (The check then runs at
    ``size`` only.)

    Args:
        model: a HydraNet (left unchanged).
        path: the ``.onnx`` file to write (one file, weights inside).
        opset: ONNX opset, at least 17. 18 and later use the ``torch.export``-based
            exporter; 17 uses the TorchScript-based one (the newer one cannot write 17).
        size: ``(height, width)`` of the example input used for export and the first check.
        batch: batch of the example input.
        check: run the file in onnxruntime against PyTorch at two sizes (see :func:`check_onnx`).
        check_sizes: the sizes to check instead of ``size`` and an odd one near half of it.
        static: fix batch and size (see above).
        runtime_forms: write the equivalent layers onnxruntime runs faster (see above).

    Returns:
        ``{"path", "format", "opset", "inputs", "outputs", "check"}``.
    """
    check_opset(opset)
    h, w = _validate_size(size)
    path = writable_file(path)
    net = _export_copy(model, runtime_forms=runtime_forms)
    names = list(net.task_names)
    example = torch.randn(batch, 3, h, w)
    tmp = path.with_name(f".{path.name}.tmp")
    with _removed_on_failure(tmp, path), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if int(opset) >= 18:
            _export_dynamo(TaskTuple(net), example, names, tmp, int(opset), static, model)
        else:
            _export_torchscript(TaskTuple(net), example, names, tmp, int(opset), static)
        _write_metadata(tmp, model)
        if not static and not _has_dynamic_size(tmp):
            raise ConfigError(_static_only(model, h, w, "the exporter fixed the input's batch or size"))
        os.replace(tmp, path)
    _check_graph(path, names)
    report = {
        "path": str(path),
        "format": "onnx",
        "opset": _file_opset(path),
        "inputs": ["image"],
        "outputs": names,
        "static": bool(static),
        "runtime_forms": bool(runtime_forms),
        "input_shape": [batch, 3, h, w] if static else ["batch", 3, "height", "width"],
    }
    if check:
        sizes = [(h, w)] if static else _check_sizes((h, w), check_sizes)
        report["check"] = check_onnx(path, model, sizes, batch=batch, vary_batch=not static)
    return report


def _write_metadata(path, model: nn.Module) -> None:
    """Store the model's config (JSON) as ONNX metadata, so the file alone names its tasks,
    and the sha256 of its tensors (:mod:`hydranet.inference.onnx_integrity`), checked on load."""
    import json

    import onnx

    onnx_model = onnx.load(str(path), load_external_data=False)
    config = getattr(model, "config", None)
    if config:
        config = dict(config)
        if isinstance(config.get("model"), dict):
            config["model"] = {**config["model"], "encoder_weights": None}  # the weights are in the file
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = CONFIG_METADATA_KEY, json.dumps(config)
    stamp_hash(onnx_model)
    onnx.save(onnx_model, str(path))


def _file_opset(path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max(int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _static_only(model: nn.Module, h: int, w: int, reason: str) -> str:
    """The error for a model that exports at one size only, naming the flag that does that."""
    encoder = ((getattr(model, "config", None) or {}).get("model") or {}).get("encoder", "this model")
    return (
        f"{encoder} does not export to ONNX with a dynamic input size ({reason}); export it at one size "
        f"with --static --size {w}x{h} (Python: export_onnx(..., static=True))"
    )


def _has_dynamic_size(path) -> bool:
    """True when the file's input ``image`` has a symbolic batch, height and width."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return len(dims) == 4 and all(not dims[i].HasField("dim_value") for i in (0, 2, 3))


def _check_graph(path, names: list[str]) -> None:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = [i.name for i in graph.input]
    outputs = [o.name for o in graph.output]
    if inputs != ["image"] or outputs != names:
        raise RuntimeError(f"{path}: unexpected graph interface: inputs {inputs}, outputs {outputs}")


# --- TorchScript ----------------------------------------------------------------------------


def check_torchscript(
    path, model: nn.Module, sizes: Sequence[tuple[int, int]] = ((480, 640), (241, 323)), batch: int = 1, seed: int = 0
) -> list[dict]:
    """Load the TorchScript file and compare it with ``model`` on random inputs (see :func:`check_onnx`)."""
    net = copy.deepcopy(model).float().cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
        loaded = torch.jit.load(str(path), map_location="cpu").eval()

    def run(x):
        with torch.no_grad():
            return dict(loaded(x))

    return _compare(net, run, list(net.task_names), sizes, batch, seed)


def export_torchscript(
    model: nn.Module,
    path,
    size: tuple[int, int] = (480, 640),
    batch: int = 1,
    check: bool = True,
    check_sizes: Optional[Sequence[tuple[int, int]]] = None,
) -> dict:
    """Write ``model`` as a traced TorchScript module returning ``{task: tensor}``.

    The trace records shapes symbolically, so the file accepts any batch and size; the
    check runs it at two sizes against PyTorch (see :func:`check_torchscript`).
    """
    h, w = _validate_size(size)
    path = writable_file(path)
    net = _export_copy(model)
    example = torch.randn(batch, 3, h, w)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(TaskDict(net), (example,), strict=False, check_trace=False)
    tmp = path.with_name(f".{path.name}.tmp")
    with _removed_on_failure(tmp, path):
        traced.save(str(tmp))
        os.replace(tmp, path)
    report = {"path": str(path), "format": "torchscript", "inputs": ["image"], "outputs": list(net.task_names)}
    if check:
        report["check"] = check_torchscript(path, model, _check_sizes((h, w), check_sizes), batch=batch)
    return report


def format_check(check: list[dict]) -> str:
    """The check results as text: one line per size and task."""
    lines = []
    for entry in check:
        lines.append(
            f"batch {entry['batch']}, {entry['size']}: largest difference "
            f"{entry['max_abs']:.3g} (relative {entry['max_rel']:.3g})"
        )
        for name, d in entry["tasks"].items():
            lines.append(f"  {name:<16} abs {d['abs']:.3g}  rel {d['rel']:.3g}")
    return "\n".join(lines)
