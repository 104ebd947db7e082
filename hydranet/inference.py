"""The predictor every front end uses: one frame (or a batch) in, per-task results out.

    from hydranet.inference import Predictor
    predictor = Predictor("model.pt")                # or a HydraNet; device="cuda", half=True
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

Timing (see ``docs``/DESIGN "Pitfalls" about FPS): ``model`` time covers the network alone
(input already on the device; CUDA synchronised before and after), ``end_to_end`` covers
pre-processing, the upload, the network, post-processing and the download to NumPy. Call
:meth:`Predictor.warmup` first (the demo does) so the first call's one-off costs are left out.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CheckpointError, ConfigError, DataError
from .tasks import TaskSpec

__all__ = ["Predictor", "Prediction", "default_weights_path", "resolve_weights", "read_image",
           "collect_images", "IMAGE_EXTENSIONS", "as_rgb_frame"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
BUNDLED_WEIGHTS_NAME = "hydranet_synthetic.pt"


# --------------------------------------------------------------------------- weights

def default_weights_path() -> Path:
    """``$HYDRANET_WEIGHTS`` if set, else the bundled ``<repo>/weights/hydranet_synthetic.pt``."""
    env = os.environ.get("HYDRANET_WEIGHTS")
    if env:
        return Path(env).expanduser()
    import hydranet

    return Path(hydranet.__file__).resolve().parents[1] / "weights" / BUNDLED_WEIGHTS_NAME


def resolve_weights(weights: Optional[Union[str, Path]] = None) -> Path:
    """The checkpoint to use: ``weights`` if given, else :func:`default_weights_path`.

    Raises:
        CheckpointError: the file does not exist; for the default, the message says how to
            create the bundled checkpoint.
    """
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
        return path
    path = default_weights_path()
    if not path.is_file():
        source = "$HYDRANET_WEIGHTS" if os.environ.get("HYDRANET_WEIGHTS") else "the bundled checkpoint"
        raise CheckpointError(
            f"no --weights given and {source} {str(path)!r} does not exist. Pass --weights CKPT, or create it "
            f"(see weights/README.md): `hydranet train --out runs/synthetic` (the built-in synthetic set), then "
            f"`hydranet convert runs/synthetic/best.pt {path} --half`.")
    return path


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


def read_image(path: Union[str, Path]) -> np.ndarray:
    """Read an image file as uint8 RGB ``H x W x 3``.

    Raises:
        DataError: the file is missing or not a readable image (the message names it).
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {str(path)!r} does not exist")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise DataError(f"{path}: cannot be read as an image (unknown format or corrupt file)")
    return np.ascontiguousarray(bgr[..., ::-1])


def collect_images(inputs: Sequence[Union[str, Path]]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders expanded to their images (sorted).

    Raises:
        DataError: an input does not exist, or a folder holds no image.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise DataError(f"folder {str(path)!r} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"image {str(path)!r} does not exist")
    if not files:
        raise DataError("no input images given")
    return files


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
        out = {}
        for name, value in self.outputs.items():
            kind = self.tasks[name].kind
            if kind == "classification":
                out[name] = dict(value)
            elif kind == "regression":
                out[name] = [float(v) for v in np.ravel(value)]
            elif kind == "segmentation":
                from .visualize import class_names_for, present_classes

                names = class_names_for(self.tasks[name])
                ids = present_classes(value, self.tasks[name].classes)
                counts = np.bincount(value.ravel().astype(np.int64), minlength=self.tasks[name].classes)
                total = float(value.size)
                out[name] = {"classes_present": [{"class_id": c, "name": names[c],
                                                  "fraction": round(float(counts[c]) / total, 5)} for c in ids]}
            elif kind == "depth":
                valid = value[np.isfinite(value) & (value > 0)]
                out[name] = ({"min_m": float(valid.min()), "median_m": float(np.median(valid)),
                              "max_m": float(valid.max())} if valid.size else {})
            else:
                out[name] = {"shape": list(value.shape)}
        return out


# --------------------------------------------------------------------------- the predictor

class Predictor:
    """Runs a Hydranet model on uint8 RGB frames and returns full-resolution results.

    Args:
        model_or_checkpoint_path: a checkpoint file of the project's format (the model is
            rebuilt from its config), a ``HydraNet``, or a model already made by
            :func:`hydranet.fast.optimize_for_inference`.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or a ``torch.device``.
        half: fp16 weights and activations (CUDA only; a ConfigError on CPU). Results are
            returned in float32 either way.
        fast: run the model through :func:`hydranet.fast.optimize_for_inference` (exact in
            fp32); ``False`` runs the plain model.
        size: ``(h, w)`` to resize every frame to before the network (None: the frame's own size).
        pad_to: pad the network input to a multiple of this stride (off by default: the
            model takes any size); outputs are cropped back.

    Raises:
        CheckpointError: the checkpoint is missing or not a Hydranet checkpoint.
        ConfigError: CUDA asked for and absent, or half precision on CPU.
    """

    def __init__(self, model_or_checkpoint_path, device: Union[str, torch.device] = "cpu", half: bool = False,
                 fast: bool = True, size: Optional[Sequence[int]] = None, pad_to: Optional[int] = None):
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
            from .checkpoint import load_model

            self.checkpoint = Path(model)
            model = load_model(model, device="cpu")
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "tasks"):
            raise ConfigError(f"Predictor needs a checkpoint path or a Hydranet model, got {type(model).__name__}")

        from .fast import FastModel, optimize_for_inference

        if isinstance(model, FastModel):
            self.fast = True
            self.net = model
            self.device = model.device
            self.dtype = model.dtype
        elif fast:
            self.fast = True
            self.net = optimize_for_inference(model, device=device, dtype=self.dtype if half else None)
        else:
            self.fast = False
            self.net = model.to(device=device, dtype=self.dtype).eval()
        self.tasks: list[TaskSpec] = list(model.tasks)
        self.task_map = {t.name: t for t in self.tasks}
        self.config: dict = dict(getattr(model, "config", {}) or {})
        self.reset_timing()

    # ----------------------------------------------------------------- info
    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def first_task(self, kind: str) -> Optional[TaskSpec]:
        """The first task of ``kind`` (e.g. ``"depth"``), or None."""
        return next((t for t in self.tasks if t.kind == kind), None)

    # ----------------------------------------------------------------- timing
    def reset_timing(self) -> None:
        """Forget the accumulated timings (e.g. after a warm-up)."""
        self.timing = {"frames": 0, "calls": 0, "model_s": 0.0, "end_to_end_s": 0.0}

    def fps(self) -> dict:
        """Frames per second over the calls since :meth:`reset_timing`: the network alone
        (``model_fps``) and pre-processing + network + post-processing (``end_to_end_fps``)."""
        t = self.timing
        return {"frames": t["frames"],
                "model_fps": t["frames"] / t["model_s"] if t["model_s"] > 0 else None,
                "end_to_end_fps": t["frames"] / t["end_to_end_s"] if t["end_to_end_s"] > 0 else None,
                "model_ms_per_frame": 1000 * t["model_s"] / t["frames"] if t["frames"] else None,
                "end_to_end_ms_per_frame": 1000 * t["end_to_end_s"] / t["frames"] if t["frames"] else None}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warmup(self, frame: Union[np.ndarray, Sequence[int]], iterations: int = 2, batch: int = 1) -> None:
        """Run ``iterations`` untimed batches on ``frame`` (or a black frame of size ``(h, w)``)."""
        if not isinstance(frame, np.ndarray):
            frame = np.zeros((int(frame[0]), int(frame[1]), 3), np.uint8)
        saved = dict(self.timing)
        for _ in range(max(0, iterations)):
            self.predict_batch([frame] * max(1, batch))
        self.timing = saved

    # ----------------------------------------------------------------- stages
    def preprocess(self, frames: Sequence[np.ndarray]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Frames of one size -> normalised ``N x 3 x h x w`` float tensor (CPU) and the
        unpadded network size ``(h, w)``."""
        import cv2

        from .data.transforms import normalize_image

        tensors = []
        for frame in frames:
            if self.size is not None and frame.shape[:2] != self.size:
                h, w = self.size
                interp = cv2.INTER_AREA if h * w < frame.shape[0] * frame.shape[1] else cv2.INTER_LINEAR
                frame = cv2.resize(frame, (w, h), interpolation=interp)
            tensors.append(normalize_image(frame))
        x = torch.stack(tensors)
        net_size = tuple(x.shape[-2:])
        if self.pad_to:
            s = self.pad_to
            ph, pw = (-net_size[0]) % s, (-net_size[1]) % s
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), value=0.0)  # zero = the mean colour after normalisation
        return x, net_size

    def _run_model(self, x: torch.Tensor) -> dict:
        if self.fast:
            return self.net(x)
        with torch.inference_mode():
            out = self.net(x.to(self.device, self.dtype))
        return {k: v.float() for k, v in out.items()}

    def postprocess(self, outputs: Mapping[str, torch.Tensor], net_size: tuple[int, int],
                    frame_size: tuple[int, int]) -> list[dict]:
        """Network outputs (on the device) -> one ``{task: result}`` dict per frame (NumPy)."""
        from .losses.task_losses import denormalize_prediction

        n = next(iter(outputs.values())).shape[0]
        results = [dict() for _ in range(n)]
        with torch.inference_mode():
            for task in self.tasks:
                y = outputs[task.name].float()
                if task.dense:
                    y = y[..., :net_size[0], :net_size[1]]
                    if tuple(y.shape[-2:]) != tuple(frame_size):
                        y = F.interpolate(y, size=frame_size, mode="bilinear", align_corners=False)
                    if task.kind == "segmentation":
                        dtype = torch.uint8 if task.classes <= 256 else torch.int32
                        arr = y.argmax(1).to(dtype).cpu().numpy()
                    elif task.kind == "depth":
                        arr = y[:, 0].abs().cpu().numpy()
                    else:  # normals
                        arr = F.normalize(y, dim=1, eps=1e-6).permute(0, 2, 3, 1).contiguous().cpu().numpy()
                    for i in range(n):
                        results[i][task.name] = arr[i]
                elif task.kind == "classification":
                    probs = y.softmax(1)
                    p, c = probs.max(1)
                    p, c = p.cpu().tolist(), c.cpu().tolist()
                    from .visualize import class_names_for

                    names = class_names_for(task)
                    for i in range(n):
                        results[i][task.name] = {"class_id": int(c[i]), "name": names[c[i]],
                                                 "probability": float(p[i])}
                else:  # regression
                    values = denormalize_prediction(task, y).cpu().numpy().astype(np.float32)
                    for i in range(n):
                        results[i][task.name] = values[i]
        return results

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
        if len(groups) > 1:   # mixed sizes: one network call per size
            out: list[Optional[Prediction]] = [None] * len(frames)
            for idx in groups.values():
                for i, p in zip(idx, self.predict_batch([frames[i] for i in idx])):
                    out[i] = p
            return out  # type: ignore[return-value]

        frame_size = tuple(frames[0].shape[:2])
        self._sync()
        t0 = time.perf_counter()
        x, net_size = self.preprocess(frames)
        x = x.to(self.device, non_blocking=True)
        self._sync()
        t1 = time.perf_counter()
        outputs = self._run_model(x)
        self._sync()
        t2 = time.perf_counter()
        results = self.postprocess(outputs, net_size, frame_size)
        t3 = time.perf_counter()

        n = len(frames)
        self.timing["frames"] += n
        self.timing["calls"] += 1
        self.timing["model_s"] += t2 - t1
        self.timing["end_to_end_s"] += t3 - t0
        timing = {"model_ms": 1000 * (t2 - t1) / n, "end_to_end_ms": 1000 * (t3 - t0) / n}
        return [Prediction(outputs=r, tasks=dict(self.task_map), size=frame_size, timing=dict(timing))
                for r in results]

    def __repr__(self) -> str:
        src = f"checkpoint={str(self.checkpoint)!r}, " if self.checkpoint else ""
        return (f"Predictor({src}tasks={self.task_names}, device={self.device}, "
                f"dtype={str(self.dtype).replace('torch.', '')}, fast={self.fast}, size={self.size})")


# --------------------------------------------------------------------------- files (hydranet predict)

def display_max_depth(task: TaskSpec, config: Optional[dict], depth: Optional[np.ndarray] = None,
                      override: Optional[float] = None) -> float:
    """The top of the depth colour scale: ``override``, else the task's/checkpoint's
    ``max_depth``, else the 99th percentile of ``depth`` rounded up to a readable value."""
    from .visualize import max_depth_for, nice_ceil

    if override:
        return float(override)
    known = max_depth_for(task, config)
    if known:
        return known
    if depth is not None:
        valid = depth[np.isfinite(depth) & (depth > 0)]
        if valid.size:
            return nice_ceil(float(np.percentile(valid, 99)))
    return 10.0


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rgb[..., ::-1] if rgb.ndim == 3 else rgb
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr)):
        raise DataError(f"{path}: could not be written")


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    """Depth in metres -> uint16 millimetres ``round(depth * 1000)`` (0 = invalid; saturates at 65.535 m)."""
    d = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float64)
    return np.clip(np.rint(d * 1000.0), 0, 65535).astype(np.uint16)


def render_figure(frame: np.ndarray, pred: Prediction, config: Optional[dict] = None,
                  max_depth: Optional[float] = None, cmap: str = "magma", alpha: float = 0.5) -> np.ndarray:
    """The side-by-side figure: input | segmentation overlay | depth colour map with scale bar,
    a legend of the classes present underneath (panels present only for the tasks the model has)."""
    from . import visualize as vis

    h, w = frame.shape[:2]
    fs = vis.font_scale_for(h)
    panels = [vis.put_label(frame.copy(), "input", font_scale=fs)]
    legend = None
    seg = pred.first("segmentation")
    if seg:
        spec = pred.tasks[seg]
        palette = vis.palette_for(spec)
        ids = pred[seg]
        panels.append(vis.put_label(vis.overlay(frame, vis.colorize_segmentation(ids, palette), alpha), seg,
                                    font_scale=fs))
        legend = (vis.present_classes(ids, spec.classes), vis.class_names_for(spec), palette)
    dep = pred.first("depth")
    if dep:
        top = display_max_depth(pred.tasks[dep], config, pred[dep], max_depth)
        panels.append(vis.put_label(vis.colorize_depth(pred[dep], top, cmap), dep, font_scale=fs))
        panels.append(vis.depth_scale_bar(h, top, cmap, font_scale=fs))
    elif pred.first("normals"):
        nor = pred.first("normals")
        panels.append(vis.put_label(vis.normals_to_rgb(pred[nor]), nor, font_scale=fs))
    figure = vis.hstack(panels, gap=4)
    if legend is not None:
        strip = vis.draw_legend(*legend, font_scale=fs, width=figure.shape[1])
        figure = np.concatenate([figure, strip], axis=0)
    return figure


def save_prediction(frame: np.ndarray, pred: Prediction, out_dir: Union[str, Path], stem: str,
                    depth_format: str = "png", ply: Optional[str] = None, intrinsics: Optional[Mapping] = None,
                    config: Optional[dict] = None, max_depth: Optional[float] = None, cmap: str = "magma") -> dict:
    """Write the files of one prediction into ``out_dir``; returns ``{label: path}``.

    Per segmentation task ``T``: ``STEM_T.png`` (colours) and ``STEM_T_ids.png`` (class ids,
    8-bit, or 16-bit above 256 classes). Per depth task: ``STEM_T.png`` (colour map with a
    scale bar in metres) and ``STEM_T_mm.png`` (uint16 millimetres, ``round(depth * 1000)``,
    0 = invalid) or ``STEM_T.npy`` (float32 metres). Per normals task: ``STEM_T.png``. Always
    ``STEM_figure.png`` (see :func:`render_figure`). With ``ply`` (``"binary"`` or ``"ascii"``)
    and a depth task, ``STEM.ply``: one coloured point per valid depth pixel.
    """
    from . import visualize as vis

    if depth_format not in ("png", "npy"):
        raise ConfigError(f"depth format must be png or npy, got {depth_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    h = frame.shape[0]
    for name, value in pred.items():
        spec = pred.tasks[name]
        if spec.kind == "segmentation":
            _write_png(out_dir / f"{stem}_{name}.png", vis.colorize_segmentation(value, vis.palette_for(spec)))
            ids = value.astype(np.uint8 if spec.classes <= 256 else np.uint16)
            _write_png(out_dir / f"{stem}_{name}_ids.png", ids)
            files[name] = str(out_dir / f"{stem}_{name}.png")
            files[f"{name}_ids"] = str(out_dir / f"{stem}_{name}_ids.png")
        elif spec.kind == "depth":
            top = display_max_depth(spec, config, value, max_depth)
            coloured = vis.hstack([vis.colorize_depth(value, top, cmap), vis.depth_scale_bar(h, top, cmap)])
            _write_png(out_dir / f"{stem}_{name}.png", coloured)
            files[name] = str(out_dir / f"{stem}_{name}.png")
            if depth_format == "png":
                raw = out_dir / f"{stem}_{name}_mm.png"
                _write_png(raw, depth_to_png_mm(value))
            else:
                raw = out_dir / f"{stem}_{name}.npy"
                np.save(raw, value.astype(np.float32))
            files[f"{name}_raw"] = str(raw)
        elif spec.kind == "normals":
            _write_png(out_dir / f"{stem}_{name}.png", vis.normals_to_rgb(value))
            files[name] = str(out_dir / f"{stem}_{name}.png")
    fig = out_dir / f"{stem}_figure.png"
    _write_png(fig, render_figure(frame, pred, config, max_depth, cmap))
    files["figure"] = str(fig)
    dep = pred.first("depth")
    if ply and dep:
        from .pointcloud import default_intrinsics, depth_to_points, write_ply

        if ply not in ("binary", "ascii"):
            raise ConfigError(f"PLY format must be binary or ascii, got {ply!r}")
        k = default_intrinsics(frame.shape[0], frame.shape[1], config, list(pred.tasks.values()))
        k.update({key: float(v) for key, v in (intrinsics or {}).items() if v is not None})
        points, colours = depth_to_points(pred[dep], k["fx"], k["fy"], k["cx"], k["cy"], rgb=frame)
        write_ply(out_dir / f"{stem}.ply", points, colours, binary=(ply == "binary"))
        files["ply"] = str(out_dir / f"{stem}.ply")
        files["ply_points"] = int(len(points))
        files["intrinsics"] = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in k.items()}
    return files


def predict_images(inputs: Sequence[Union[str, Path]], predictor: Predictor, out_dir: Union[str, Path],
                   depth_format: str = "png", ply: Optional[str] = None, intrinsics: Optional[Mapping] = None,
                   max_depth: Optional[float] = None, cmap: str = "magma", log=print) -> dict:
    """Run ``predictor`` on image files and folders and write every result (:func:`save_prediction`).

    Returns ``{"images": [{"image", "size", "predictions", "files", "timing"}], "timing": ...}``;
    ``log`` gets one line per image with its image-level predictions.
    """
    files = collect_images(inputs)
    records, used = [], set()
    predictor.reset_timing()
    for path in files:
        frame = read_image(path)
        pred = predictor.predict(frame)
        stem, k = path.stem, 2
        while stem in used:
            stem, k = f"{path.stem}_{k}", k + 1
        used.add(stem)
        written = save_prediction(frame, pred, out_dir, stem, depth_format, ply, intrinsics, predictor.config,
                                  max_depth, cmap)
        summary = pred.summary()
        records.append({"image": str(path), "size": list(pred.size), "predictions": summary, "files": written,
                        "timing": {k2: round(v, 3) for k2, v in pred.timing.items()}})
        if log:
            log(f"{path}: " + _one_line(pred, summary))
    return {"weights": str(predictor.checkpoint) if predictor.checkpoint else None,
            "device": str(predictor.device), "fast": predictor.fast, "out": str(out_dir),
            "images": records, "timing": predictor.fps()}


def _one_line(pred: Prediction, summary: dict) -> str:
    parts = []
    for name, spec in pred.tasks.items():
        if spec.kind == "classification":
            v = summary[name]
            parts.append(f"{name}={v['name']} ({v['probability']:.2f})")
        elif spec.kind == "regression":
            parts.append(f"{name}=" + ",".join(f"{v:.3g}" for v in summary[name]))
        elif spec.kind == "segmentation":
            top = summary[name]["classes_present"][:3]
            parts.append(f"{name}: " + ", ".join(f"{c['name']} {100 * c['fraction']:.0f}%" for c in top))
        elif spec.kind == "depth" and summary[name]:
            parts.append(f"{name}: median {summary[name]['median_m']:.2f} m")
    return "; ".join(parts)
