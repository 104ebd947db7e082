"""``hydranet predict``: run a Predictor on image files and write every result to disk.

Colour maps, class-id PNGs, 16-bit depth in millimetres (or .npy), the side-by-side figure
and an optional PLY point cloud per image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np

from .. import visualize as vis
from ..data.io import IMAGE_EXTENSIONS, protect_inputs, read_image, write_png
from ..errors import ConfigError, DataError
from ..inference.predictor import Prediction, Predictor
from ..kinds import draw_style
from ..kinds.depth import DEPTH, depth_to_png_mm
from .pointcloud import default_intrinsics, depth_to_points, write_ply

__all__ = ["IMAGE_EXTENSIONS", "collect_images", "depth_to_png_mm", "predict_images", "save_prediction"]


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


def save_prediction(
    frame: np.ndarray,
    pred: Prediction,
    out_dir: Union[str, Path],
    stem: str,
    depth_format: str = "png",
    ply: Optional[str] = None,
    intrinsics: Optional[Mapping] = None,
    config: Optional[dict] = None,
    max_depth: Optional[float] = None,
    cmap: str = "magma",
    palette=None,
) -> dict:
    """Write the files of one prediction into ``out_dir``; returns ``{label: path}``.

    Each dense task writes its own files (its kind's ``save``): segmentation ``STEM_T.png``
    (colours) and ``STEM_T_ids.png`` (class ids, 8-bit, or 16-bit above 256 classes); depth
    ``STEM_T.png`` (colour map with a scale bar in metres) and ``STEM_T_mm.png`` (uint16
    millimetres, ``round(depth * 1000)``, 0 = invalid) or ``STEM_T.npy`` (float32 metres);
    normals ``STEM_T.png``. Always ``STEM_figure.png`` (see :func:`hydranet.visualize.render_figure`).
    With ``ply`` (``"binary"`` or ``"ascii"``) and a depth task, ``STEM.ply``: one coloured
    point per valid depth pixel. ``palette`` overrides the checkpoint's segmentation colours
    (see :func:`hydranet.visualize.resolve_palette`).
    """

    if depth_format not in ("png", "npy"):
        raise ConfigError(f"depth format must be png or npy, got {depth_format!r}")
    if ply and ply not in ("binary", "ascii"):
        raise ConfigError(f"PLY format must be binary or ascii, got {ply!r}")
    out_dir = Path(out_dir)
    style = draw_style(
        config,
        vis.font_scale_for(frame.shape[0]),
        max_depth=max_depth,
        cmap=cmap,
        palette=palette,
        depth_format=depth_format,
    )
    files: dict = {}
    for name, value in pred.items():
        spec = pred.tasks[name]
        files.update(spec.task_kind.save(spec, value, out_dir, stem, style))
    fig = out_dir / f"{stem}_figure.png"
    write_png(fig, vis.render_figure(frame, pred, style))
    files["figure"] = str(fig)
    dep = pred.first(DEPTH.name)  # a point cloud needs metric depth
    if ply and dep:
        k = default_intrinsics(frame.shape[0], frame.shape[1], config, list(pred.tasks.values()))
        k.update({key: float(v) for key, v in (intrinsics or {}).items() if v is not None})
        points, colours = depth_to_points(pred[dep], k["fx"], k["fy"], k["cx"], k["cy"], rgb=frame)
        write_ply(out_dir / f"{stem}.ply", points, colours, binary=(ply == "binary"))
        files["ply"] = str(out_dir / f"{stem}.ply")
        files["ply_points"] = int(len(points))
        files["intrinsics"] = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in k.items()}
    return files


def predict_images(
    inputs: Sequence[Union[str, Path]],
    predictor: Predictor,
    out_dir: Union[str, Path],
    depth_format: str = "png",
    ply: Optional[str] = None,
    intrinsics: Optional[Mapping] = None,
    max_depth: Optional[float] = None,
    cmap: str = "magma",
    log=print,
    palette=None,
) -> dict:
    """Run ``predictor`` on image files and folders and write every result (:func:`save_prediction`).

    Returns ``{"images": [{"image", "size", "predictions", "files", "timing"}], "timing": ...}``;
    ``log`` gets one line per image with its image-level predictions.
    """
    files = collect_images(inputs)
    protect_inputs(files)  # an output named like an input image (x.png, x_segm.png) never replaces it
    records, used = [], set()
    predictor.reset_timing()
    for path in files:
        frame = read_image(path)
        pred = predictor.predict(frame)
        stem, k = path.stem, 2
        while stem in used:
            stem, k = f"{path.stem}_{k}", k + 1
        used.add(stem)
        written = save_prediction(
            frame, pred, out_dir, stem, depth_format, ply, intrinsics, predictor.config, max_depth, cmap, palette
        )
        records.append(
            {
                "image": str(path),
                "size": list(pred.size),
                "predictions": pred.summary(),
                "files": written,
                "timing": {k2: round(v, 3) for k2, v in pred.timing.items()},
            }
        )
        if log:
            log(f"{path}: " + pred.describe())
    return {
        "weights": str(predictor.checkpoint) if predictor.checkpoint else None,
        "device": str(predictor.device),
        "fast": predictor.fast,
        "out": str(out_dir),
        "images": records,
        "timing": predictor.fps(),
    }
