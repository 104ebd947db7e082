"""Coloured 3-D point clouds from a depth map and pinhole intrinsics, written as PLY.

Points are in the camera frame Hydranet uses for normals: x right, y up, z towards the
viewer, so the scene lies at negative z (``z = -depth``) and opens the right way up in
viewers that look down -z with y up (MeshLab, CloudCompare, Open3D). For pixel ``(u, v)``
(column, row; pixel centres at integer coordinates) with depth ``d`` (z-depth in metres):

    x = (u - cx) * d / fx,   y = -(v - cy) * d / fy,   z = -d

Default intrinsics (:func:`default_intrinsics`), in pixels of the image being projected:

* NYUD models: the Kinect colour camera of NYUDv2, fx 518.86, fy 519.47, cx 325.58,
  cy 253.74 at 640 x 480, scaled to the image size;
* KITTI models: KITTI's rectified colour camera (fx = fy = 721.54, cx 609.56, cy 172.85 at
  1242 x 375), scaled to the image size;
* anything else (the synthetic set included): a 60 degree horizontal field of view,
  fx = fy = 0.5 W / tan(30 deg) = 0.866 W, and the principal point at the image centre
  ((W - 1) / 2, (H - 1) / 2), which is exactly the synthetic renderer's camera.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..data.io import write_bytes_atomic
from ..errors import ConfigError
from ..labelsets import NYUD40_NAMES

__all__ = ["default_intrinsics", "depth_to_points", "write_ply", "read_ply_header"]

NYUD_INTRINSICS = {"fx": 518.86, "fy": 519.47, "cx": 325.58, "cy": 253.74, "width": 640, "height": 480}
KITTI_INTRINSICS = {"fx": 721.5377, "fy": 721.5377, "cx": 609.5593, "cy": 172.854, "width": 1242, "height": 375}
DEFAULT_HFOV_DEG = 60.0


def _model_dataset(config: Optional[dict], tasks: Sequence = ()) -> Optional[str]:
    """``"nyud"``, ``"kitti"`` or None, from the checkpoint's meta or its tasks' class names."""
    meta = (config or {}).get("meta") or {}
    datasets = [str(d).lower() for d in (meta.get("datasets") or [])]
    if datasets:
        return (
            "nyud" if any("nyu" in d for d in datasets) else ("kitti" if any("kitti" in d for d in datasets) else None)
        )

    for t in tasks:
        names = tuple(getattr(t, "class_names", None) or ())
        if names == NYUD40_NAMES:
            return "nyud"
        if names and all(n.startswith("kitti") for n in names):
            return "kitti"
    return None


def default_intrinsics(height: int, width: int, config: Optional[dict] = None, tasks: Sequence = ()) -> dict:
    """``{"fx", "fy", "cx", "cy", "source"}`` for an image of ``height x width`` (see the module docstring)."""
    dataset = _model_dataset(config, tasks)
    if dataset in ("nyud", "kitti"):
        ref = NYUD_INTRINSICS if dataset == "nyud" else KITTI_INTRINSICS
        sx, sy = width / ref["width"], height / ref["height"]
        return {
            "fx": ref["fx"] * sx,
            "fy": ref["fy"] * sy,
            "cx": ref["cx"] * sx,
            "cy": ref["cy"] * sy,
            "source": f"{dataset} camera scaled from {ref['width']}x{ref['height']}",
        }
    f = 0.5 * width / math.tan(math.radians(DEFAULT_HFOV_DEG) / 2)
    return {
        "fx": f,
        "fy": f,
        "cx": (width - 1) / 2,
        "cy": (height - 1) / 2,
        "source": f"{DEFAULT_HFOV_DEG:g} deg horizontal field of view, centred principal point",
    }


def depth_to_points(
    depth: np.ndarray,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    rgb: Optional[np.ndarray] = None,
    max_depth: Optional[float] = None,
):
    """Back-project every valid pixel (finite depth > 0, and <= ``max_depth`` if given).

    Returns ``(points N x 3 float32, colours N x 3 uint8 or None)`` in row-major pixel order.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"depth must be H x W, got shape {depth.shape}")
    for name, value in (("fx", fx), ("fy", fy), ("cx", cx), ("cy", cy)):
        if not np.isfinite(value):  # a NaN or infinite intrinsic would make every point NaN
            raise ConfigError(f"point-cloud intrinsics: {name} (--{name}) must be a finite number, got {value}")
    if not (fx > 0 and fy > 0):
        raise ConfigError(f"focal lengths must be positive, got fx={fx} fy={fy}")
    valid = np.isfinite(depth) & (depth > 0)
    if max_depth is not None:
        valid &= depth <= max_depth
    v, u = np.nonzero(valid)
    d = depth[v, u]
    pts = np.stack([(u - cx) * d / fx, -(v - cy) * d / fy, -d], axis=1).astype(np.float32)
    colours = None
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape[:2] != depth.shape:
            raise ValueError(f"colours {rgb.shape[:2]} and depth {depth.shape} differ in size")
        colours = rgb[v, u, :3].astype(np.uint8)
    return pts, colours


def write_ply(
    path: Union[str, Path], points: np.ndarray, colours: Optional[np.ndarray] = None, binary: bool = True
) -> None:
    """Write a PLY point cloud (``binary_little_endian`` or ``ascii``): float x, y, z and,
    with ``colours``, uchar red, green, blue."""

    path = Path(path)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
    n = len(points)
    header = [
        "ply",
        f"format {'binary_little_endian' if binary else 'ascii'} 1.0",
        "comment written by hydranet (camera frame: x right, y up, z towards the viewer; metres)",
        f"element vertex {n}",
        "property float x",
        "property float y",
        "property float z",
    ]
    if colours is not None:
        colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
        if len(colours) != n:
            raise ValueError(f"{len(colours)} colours for {n} points")
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode("ascii")
    # assembled in memory, then written atomically: no partial file on a full disk
    if binary:
        fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
        if colours is not None:
            fields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
        rec = np.empty(n, dtype=fields)
        rec["x"], rec["y"], rec["z"] = points[:, 0], points[:, 1], points[:, 2]
        if colours is not None:
            rec["red"], rec["green"], rec["blue"] = colours[:, 0], colours[:, 1], colours[:, 2]
        body = rec.tobytes()
    else:
        lines = []
        for k in range(n):
            x, y, z = points[k]
            line = f"{x:.6g} {y:.6g} {z:.6g}"
            if colours is not None:
                r, g, b = colours[k]
                line += f" {r} {g} {b}"
            lines.append(line)
        body = ("\n".join(lines) + ("\n" if lines else "")).encode("ascii")
    write_bytes_atomic(path, head + body)


def read_ply_header(path: Union[str, Path]) -> dict:
    """``{"format", "vertices", "properties"}`` from a PLY file's header (for checks and tests)."""
    info = {"format": None, "vertices": None, "properties": []}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("ascii", "replace").strip()
            if line.startswith("format"):
                info["format"] = line.split()[1]
            elif line.startswith("element vertex"):
                info["vertices"] = int(line.split()[2])
            elif line.startswith("property"):
                info["properties"].append(line.split()[-1])
            elif line == "end_header":
                break
    return info
