"""Inference benchmarks, measured the way the field reports them, and honestly.

    result = hydranet.inference.bench.benchmark(model, device="cpu", batches=(1,), sizes=((480, 640),))
    print(hydranet.inference.bench.format_table(result))

Every (batch, size) is measured for each **setting** (declared once each in :mod:`.settings`) in one run:

* ``baseline``: the model as the original network runs: eager fp32, NCHW, ``nn.MaxPool2d``,
  BatchNorm unfolded, under ``torch.no_grad()``. It is always measured (added when not asked
  for): every other row's speed-up and output difference are relative to it.
* ``default``: :func:`hydranet.inference.fast.optimize_for_inference`, what every front end uses.
* ``channels_last``, ``fold_bn``: one rewrite each, to show what each is worth.
* ``compile``: the default path under ``torch.compile`` (Inductor; needs a C++ compiler on
  CPU), with PyTorch's own max pooling, which Inductor generates code for.
* ``onnxruntime``: the model exported to ONNX (:func:`hydranet.inference.export.export_onnx`, dynamic
  batch and size) and run by onnxruntime with all graph optimisations and as many intra-op
  threads as PyTorch uses; ``onnxruntime_static``: the same, exported for the measured batch
  and size only (constant Resize sizes let onnxruntime keep its blocked layout);
  ``onnxruntime_int8``: the dynamic file quantised to int8
  (:func:`hydranet.inference.quantize.quantize_onnx`), calibrated on frames of ``calibration``
  (default: the model's own data; see :func:`hydranet.inference.quantize.calibration_batches`).
  Its output difference is large by nature: judge it by task metrics (``hydranet eval`` on
  the exported files, see docs/benchmarks.md).
* ``fp16``, ``bf16``: the default path in half precision (on CUDA, and on CPUs with native
  kernels for it; elsewhere skipped with the reason).
* ``cuda_graphs``, ``cuda_graphs_fp16``: the default path replayed as a CUDA graph (fixed size).

Settings that cannot run here (CUDA settings on a CPU machine, a missing compiler) become
rows with ``status: "skipped"`` and the reason; a setting that fails becomes ``"failed"``
with the error. Nothing is dropped silently.

**Timing.** Each setting is warmed up, then the settings are timed in 4 rounds; in each
round every setting runs one untimed call (which absorbs the switch: caches, the previous
setting's worker threads still spinning) and then its share of the ``reps`` timed calls.
A load change on a shared machine thus hits all settings alike and the ratios stay fair.
On CUDA each call is timed with CUDA events and synchronised; on CPU with
``time.perf_counter``. Each row reports the median and the 90th
percentile latency and FPS = images per second at the median.

* **model-only** (``model_*`` fields): a float ``N x 3 x H x W`` ImageNet-normalised NCHW
  tensor already on the device -> the model's outputs at input size (any layout or dtype
  conversion the setting needs is inside the timing).
* **end-to-end** (``e2e_*`` fields): ``N`` uint8 ``H x W x 3`` RGB frames in host memory ->
  resize to the input size (when the frame size differs), scale, normalise, to the device ->
  model -> segmentation argmax, depth absolute value, normals normalised to unit length,
  class argmax, dense outputs at frame size -> numpy arrays in host memory.

**Allocator.** On CPU, :func:`hydranet.inference.fast.tune_cpu_allocator` (part of the default path)
is called before anything is measured, so every row, the baseline included, runs with the
same process-wide glibc settings; ``machine.allocator_tuned`` records it.

**Memory** (``peak_memory_mb``): on CUDA, ``torch.cuda.max_memory_allocated`` during one
call minus what was allocated before it (activations and outputs; not the weights). On CPU,
the growth of the process's peak resident set during one call: the peak (``VmHWM``) is reset
by writing 5 to ``/proc/self/clear_refs`` before the call and read from ``/proc/self/status``
after it, with free heap memory first returned to the OS (``malloc_trim``) so the growth
counts the pages the call touches; where that is not possible, ``ru_maxrss`` growth (a lower
bound, 0 when an earlier call already reached a higher peak). onnxruntime keeps its buffers
in its own arena between calls, so its growth is near 0 (its memory is already resident).
``memory_method`` names the method used.

**Correctness** (``max_abs_diff``, ``max_rel_diff``, ``diff_per_task``): each setting's outputs
on the timing input against the baseline's, per task; ``rel`` is the largest absolute
difference divided by the largest magnitude of the baseline's output for that task.

The package, one job per module: :mod:`.args` (the arguments, shared with the CLI),
:mod:`.settings` (each setting declared once: name, device, needs, runner builder),
:mod:`.runners` (the builders), :mod:`.memory` (peak memory of a call), :mod:`.run`
(the measurement) and :mod:`.table` (the text table). Timing and the machine's description
come from :mod:`hydranet.measure`, which the training and demo benches use too.
"""

from ...measure import interleaved_times, machine_info
from .args import check_batch_sizes, parse_batches, parse_settings, parse_sizes
from .run import ROW_FIELDS, benchmark
from .settings import DEFAULT_SETTINGS, SETTINGS
from .table import format_table

__all__ = [
    "SETTINGS",
    "DEFAULT_SETTINGS",
    "ROW_FIELDS",
    "benchmark",
    "format_table",
    "machine_info",
    "interleaved_times",
    "parse_sizes",
    "parse_batches",
    "parse_settings",
    "check_batch_sizes",
]
