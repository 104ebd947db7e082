"""The predictor every front end uses: one frame (or a batch) in, per-task results out.

    from hydranet.inference import Predictor
    predictor = Predictor("model.pt")                # or a HydraNet; device="cuda", half=True
    predictor = Predictor("model.int8.onnx")         # or an ONNX file written by `hydranet export`
    pred = predictor.predict(rgb)                    # rgb: uint8 H x W x 3, RGB order
    pred["segm"]      # H x W class ids (uint8; int32 above 255 classes)
    pred["depth"]     # H x W float32 metres (absolute value of the head's output)
    pred["normals"]   # H x W x 3 float32 unit vectors (x right, y up, z towards the viewer)
    pred["maker"]     # {"class_id": 3, "name": "...", "probability": 0.91}
    pred["diameter"]  # float32 array of the regression outputs, in the target's units
    predictor.fps()   # {"model_fps": ..., "end_to_end_fps": ...}

Pre-processing: optional resize of the frame to ``size`` (h, w), ImageNet normalisation,
optional zero padding (after normalisation: the mean colour) to a multiple of ``pad_to``.
Dense outputs are cropped back and resized to the frame's own size (bilinear on logits and
values, before the argmax), so every dense result is at full frame resolution.

ONNX files (fp32 or int8, written by ``hydranet export``; the config is in their metadata)
run in onnxruntime (:class:`hydranet.inference.onnx_model.OnnxModel`) through the same pre- and
post-processing: an fp32 file gives the checkpoint's results within 1e-4 relative (the
export check), an int8 file those of its calibration (see docs/inference.md for the accuracy).

Timing (warmed up and synchronised, pre/post-processing said): ``model`` time covers the network alone
(input already on the device; CUDA synchronised before and after), ``end_to_end`` covers
pre-processing, the upload, the network, post-processing and the download to NumPy. Call
:meth:`Predictor.warmup` first (the demo does) so the first call's one-off costs are left out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from ..data.transforms import Normalization
from ..errors import ConfigError, DataError
from ..tasks import TaskSpec
from ..weights.hub import load_model
from . import processing
from .fast import FastModel, optimize_for_inference, tune_cpu_allocator
from .onnx_model import OnnxModel, is_onnx_file
from .smoothing import TemporalSmoother

__all__ = ["Predictor", "Prediction", "as_rgb_frame"]


# --------------------------------------------------------------------------- images


def as_rgb_frame(frame: np.ndarray, where: str = "frame") -> np.ndarray:
    """A uint8 ``H x W x 3`` RGB array from ``frame`` (grey ``H x W`` and RGBA are converted)."""
    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        raise DataError(f"{where}: expected a uint8 RGB image, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{where}: expected an H x W x 3 RGB image, got shape {np.shape(frame)}")
    return arr


# --------------------------------------------------------------------------- results


@dataclass
class Prediction:
    """The results for one frame, keyed by task name (``pred["depth"]``).

    Attributes:
        outputs: ``{task: result}``: segmentation ``H x W`` class ids, depth ``H x W`` metres,
            normals ``H x W x 3`` unit vectors, classification ``{"class_id", "name",
            "probability"}``, regression a float32 array in the target's units.
        tasks: ``{task: TaskSpec}``.
        size: ``(H, W)`` of the frame (every dense result has this size).
        timing: ``{"model_ms", "end_to_end_ms"}`` for this frame (a batch's time divided by its size).
    """

    outputs: dict
    tasks: dict
    size: tuple
    timing: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.outputs[name]

    def __contains__(self, name: str) -> bool:
        return name in self.outputs

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def keys(self):
        return self.outputs.keys()

    def items(self):
        return self.outputs.items()

    def first(self, kind: str) -> Optional[str]:
        """Name of the first task of ``kind``, or None."""
        return next((n for n, t in self.tasks.items() if t.kind == kind), None)

    def summary(self) -> dict:
        """Plain data for JSON: image-level results in full, dense results summarised."""
        return {
            name: self.tasks[name].task_kind.summarize(self.tasks[name], value) for name, value in self.outputs.items()
        }

    def describe(self) -> str:
        """One log line: each task's short description (``segm: floor 40%, ...; depth: median 2.1 m``)."""
        summary = self.summary()
        parts = (self.tasks[name].task_kind.describe(self.tasks[name], summary[name]) for name in self.outputs)
        return "; ".join(p for p in parts if p)


# --------------------------------------------------------------------------- the predictor


class Predictor:
    """Runs a Hydranet model on uint8 RGB frames and returns full-resolution results.

    Args:
        model_or_checkpoint_path: a checkpoint file of the project's format (the model is
            rebuilt from its config), an ONNX file written by ``hydranet export`` (fp32 or
            int8; run by onnxruntime), a ``HydraNet``, an
            :class:`~hydranet.inference.onnx_model.OnnxModel`, or a model already made by
            :func:`hydranet.inference.fast.optimize_for_inference`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        half: fp16 weights and activations (CUDA only; a ConfigError on CPU). Results are
            returned in float32 either way.
        fast: run the model through :func:`hydranet.inference.fast.optimize_for_inference` (exact in
            fp32); ``False`` runs the plain model. (An ONNX file runs as it is.)
        size: ``(h, w)`` to resize every frame to before the network (None: the frame's own size).
        pad_to: pad the network input to a multiple of this stride (off by default: the
            model takes any size); outputs are cropped back.
        tune_allocator: on CPU, keep freed memory mapped for reuse
            (:func:`hydranet.inference.fast.tune_cpu_allocator`: process-wide, so off by
            default for library users; the command-line tools switch it on).
        smooth: temporal smoothing for video, ``0 <= smooth < 1`` (0: off): consecutive
            frames' outputs are averaged by :class:`~hydranet.inference.smoothing.TemporalSmoother`
            before post-processing. Call :meth:`reset_smoothing` between unrelated clips.

    Raises:
        CheckpointError: the checkpoint is missing or not a Hydranet checkpoint.
        ConfigError: CUDA asked for and absent, or half precision on CPU.
    """

    def __init__(
        self,
        model_or_checkpoint_path,
        device: Union[str, torch.device] = "cpu",
        half: bool = False,
        fast: bool = True,
        size: Optional[Sequence[int]] = None,
        pad_to: Optional[int] = None,
        tune_allocator: bool = False,
        smooth: float = 0.0,
    ):
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {device}: CUDA is not available on this machine (use cpu)")
        if half and device.type != "cuda":
            raise ConfigError(f"half precision needs CUDA; on {device.type} run in float32 (drop --half)")
        if size is not None:
            size = (int(size[0]), int(size[1]))
            if min(size) < 1:
                raise ConfigError(f"size must be positive (h, w), got {size}")
        if pad_to is not None and int(pad_to) < 1:
            raise ConfigError(f"pad_to must be a positive stride, got {pad_to}")
        self.device = device
        self.half = bool(half)
        self.dtype = torch.float16 if half else torch.float32
        self.size = size
        self.pad_to = int(pad_to) if pad_to else None
        self.checkpoint: Optional[Path] = None

        model = model_or_checkpoint_path
        if isinstance(model, (str, Path)):
            self.checkpoint = Path(model)
            if is_onnx_file(model):
                if half:
                    raise ConfigError(f"{model}: an ONNX file runs in the precision it was exported in (drop --half)")
                model = OnnxModel(model, device=str(device))
            else:
                model = load_model(model, device="cpu")
        if not isinstance(model, (torch.nn.Module, OnnxModel)) or not hasattr(model, "tasks"):
            raise ConfigError(
                f"Predictor needs a checkpoint or ONNX path or a Hydranet model, got {type(model).__name__}"
            )

        self.onnx = isinstance(model, OnnxModel)
        if self.onnx:
            self.fast = False
            self.net = model
            if tune_allocator and device.type == "cpu":
                tune_cpu_allocator()
        elif isinstance(model, FastModel):
            self.fast = True
            self.net = model
            self.device = model.device
            self.dtype = model.dtype
        elif fast:
            self.fast = True
            self.net = optimize_for_inference(
                model, device=device, dtype=self.dtype if half else None, tune_allocator=tune_allocator
            )
        else:
            self.fast = False
            self.net = model.to(device=device, dtype=self.dtype).eval()
        self.tasks: list[TaskSpec] = list(model.tasks)
        self.task_map = {t.name: t for t in self.tasks}
        self.config: dict = dict(getattr(model, "config", {}) or {})
        self.normalization = Normalization.from_config(self.config)

        self.smoother = TemporalSmoother(self.tasks, smooth) if smooth else None
        self.reset_timing()

    # ----------------------------------------------------------------- info
    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    # ----------------------------------------------------------------- timing
    def reset_timing(self) -> None:
        """Forget the accumulated timings (e.g. after a warm-up)."""
        self.timing = {"frames": 0, "calls": 0, "model_s": 0.0, "end_to_end_s": 0.0}

    def fps(self) -> dict:
        """Frames per second over the calls since :meth:`reset_timing`: the network alone
        (``model_fps``) and pre-processing + network + post-processing (``end_to_end_fps``)."""
        t = self.timing
        return {
            "frames": t["frames"],
            "model_fps": t["frames"] / t["model_s"] if t["model_s"] > 0 else None,
            "end_to_end_fps": t["frames"] / t["end_to_end_s"] if t["end_to_end_s"] > 0 else None,
            "model_ms_per_frame": 1000 * t["model_s"] / t["frames"] if t["frames"] else None,
            "end_to_end_ms_per_frame": 1000 * t["end_to_end_s"] / t["frames"] if t["frames"] else None,
        }

    def reset_smoothing(self) -> None:
        """Start the temporal smoothing afresh (a new clip)."""
        if self.smoother is not None:
            self.smoother.reset()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self, frame: Union[np.ndarray, Sequence[int]], iterations: int = 2, batch: int = 1) -> None:
        """Run ``iterations`` untimed batches on ``frame`` (or a black frame of size ``(h, w)``)."""
        if not isinstance(frame, np.ndarray):
            frame = np.zeros((int(frame[0]), int(frame[1]), 3), np.uint8)
        saved, smoother = dict(self.timing), self.smoother
        self.smoother = None  # warm-up frames are not part of the clip
        try:
            for _ in range(max(0, iterations)):
                self.predict_batch([frame] * max(1, batch))
        finally:
            self.timing, self.smoother = saved, smoother

    # ----------------------------------------------------------------- stages
    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Frames of one size -> the normalised network input on the device and the unpadded
        network size ``(h, w)`` (see :func:`hydranet.inference.processing.preprocess`)."""
        return processing.preprocess(frames, self.device, self.size, self.normalization, self.pad_to)

    def _run_model(self, x: torch.Tensor) -> dict:
        if self.fast or self.onnx:
            return self.net(x)
        with torch.inference_mode():
            out = self.net(x.to(self.device, self.dtype))
        return {k: v.float() for k, v in out.items()}

    def postprocess(
        self, outputs: Mapping[str, torch.Tensor], net_size: tuple[int, int], frame_size: tuple[int, int]
    ) -> list[dict]:
        """Network outputs (on the device) -> one ``{task: result}`` dict per frame (NumPy)."""
        return processing.postprocess(outputs, self.tasks, net_size, frame_size)

    # ----------------------------------------------------------------- public
    def predict(self, frame: np.ndarray) -> Prediction:
        """Results for one uint8 RGB ``H x W x 3`` frame (see the module docstring)."""
        return self.predict_batch([frame])[0]

    def predict_batch(self, frames: Sequence[np.ndarray]) -> list[Prediction]:
        """Results for several frames; frames of one size (after ``size``) go through the network together."""
        frames = [as_rgb_frame(f, f"frame {i}") for i, f in enumerate(frames)]
        if not frames:
            return []
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(tuple(f.shape[:2]), []).append(i)
        if len(groups) > 1:  # mixed sizes: one network call per size
            out: list[Optional[Prediction]] = [None] * len(frames)
            for idx in groups.values():
                for i, p in zip(idx, self.predict_batch([frames[i] for i in idx])):
                    out[i] = p
            return out  # type: ignore[return-value]

        frame_size = tuple(frames[0].shape[:2])
        self._sync()
        t0 = time.perf_counter()
        x, net_size = self.preprocess(frames)
        self._sync()
        t1 = time.perf_counter()
        outputs = self._run_model(x)
        self._sync()
        t2 = time.perf_counter()
        if self.smoother is not None:
            outputs = self.smoother(outputs)
        results = self.postprocess(outputs, net_size, frame_size)
        t3 = time.perf_counter()

        n = len(frames)
        self.timing["frames"] += n
        self.timing["calls"] += 1
        self.timing["model_s"] += t2 - t1
        self.timing["end_to_end_s"] += t3 - t0
        timing = {"model_ms": 1000 * (t2 - t1) / n, "end_to_end_ms": 1000 * (t3 - t0) / n}
        return [Prediction(outputs=r, tasks=dict(self.task_map), size=frame_size, timing=dict(timing)) for r in results]

    def __repr__(self) -> str:
        src = f"{'onnx' if self.onnx else 'checkpoint'}={str(self.checkpoint)!r}, " if self.checkpoint else ""
        return (
            f"Predictor({src}tasks={self.task_names}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, fast={self.fast}, size={self.size}"
            + (f", smooth={self.smoother.alpha}" if self.smoother else "")
            + ")"
        )
