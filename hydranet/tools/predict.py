"""``hydranet predict``: run a Predictor on image files and write every result to disk.

Colour maps, class-id PNGs, 16-bit depth in millimetres (or .npy), the side-by-side figure
and an optional PLY point cloud per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from ..data.io import IMAGE_EXTENSIONS, read_image, write_png
from ..errors import ConfigError, DataError
from ..inference.predictor import Prediction, Predictor
from ..tasks import TaskSpec

__all__ = ["IMAGE_EXTENSIONS", "collect_images", "depth_to_png_mm", "display_max_depth", "predict_images",
           "render_figure", "save_prediction"]

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


def display_max_depth(task: TaskSpec, config: Optional[dict], depth: Optional[np.ndarray] = None,
                      override: Optional[float] = None) -> float:
    """The top of the depth colour scale: ``override``, else the task's/checkpoint's
    ``max_depth``, else the 99th percentile of ``depth`` rounded up to a readable value."""
    from ..visualize import max_depth_for, nice_ceil

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


def write_png(path: Path, rgb: np.ndarray) -> None:
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
    from .. import visualize as vis

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
    from .. import visualize as vis

    if depth_format not in ("png", "npy"):
        raise ConfigError(f"depth format must be png or npy, got {depth_format!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    h = frame.shape[0]
    for name, value in pred.items():
        spec = pred.tasks[name]
        if spec.kind == "segmentation":
            write_png(out_dir / f"{stem}_{name}.png", vis.colorize_segmentation(value, vis.palette_for(spec)))
            ids = value.astype(np.uint8 if spec.classes <= 256 else np.uint16)
            write_png(out_dir / f"{stem}_{name}_ids.png", ids)
            files[name] = str(out_dir / f"{stem}_{name}.png")
            files[f"{name}_ids"] = str(out_dir / f"{stem}_{name}_ids.png")
        elif spec.kind == "depth":
            top = display_max_depth(spec, config, value, max_depth)
            coloured = vis.hstack([vis.colorize_depth(value, top, cmap), vis.depth_scale_bar(h, top, cmap)])
            write_png(out_dir / f"{stem}_{name}.png", coloured)
            files[name] = str(out_dir / f"{stem}_{name}.png")
            if depth_format == "png":
                raw = out_dir / f"{stem}_{name}_mm.png"
                write_png(raw, depth_to_png_mm(value))
            else:
                raw = out_dir / f"{stem}_{name}.npy"
                np.save(raw, value.astype(np.float32))
            files[f"{name}_raw"] = str(raw)
        elif spec.kind == "normals":
            write_png(out_dir / f"{stem}_{name}.png", vis.normals_to_rgb(value))
            files[name] = str(out_dir / f"{stem}_{name}.png")
    fig = out_dir / f"{stem}_figure.png"
    write_png(fig, render_figure(frame, pred, config, max_depth, cmap))
    files["figure"] = str(fig)
    dep = pred.first("depth")
    if ply and dep:
        from ..tools.pointcloud import default_intrinsics, depth_to_points, write_ply

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
