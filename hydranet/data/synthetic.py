"""A built-in synthetic dataset: procedurally generated indoor-like scenes, rendered by ray casting.

Each scene is a closed room (floor, walls, ceiling) with a few objects (boxes, cabinets, balls,
cylinders, tables) standing on the floor, seen by a pinhole camera. Every pixel's ray is
intersected with every primitive (vectorised numpy) and the nearest hit wins (a z-buffer), so
the image, the class ids, the depth and the normals all come from the same surface:

- depth: the z coordinate of the hit in the camera frame (metres), as a depth camera measures;
- class ids: :data:`SYNTHETIC_CLASSES` (0 floor, 1 wall, 2 ceiling, 3.. objects);
- normals: camera frame, x right, y up, z towards the viewer, unit length;
- image: a procedural texture per surface (checker tiles, stripes, wave noise) lit by a
  directional light plus a weak headlight (Lambertian), with a little sensor noise;
- image-level labels: ``count`` (number of objects with at least one visible pixel, float)
  and ``dominant`` (class id of the object covering most pixels; absent if none is visible).

Scenes are plain data (see :func:`sample_scene`) so a test or a user can write one by hand
and render it with :func:`render_scene` at any size. :class:`SyntheticScenes` is deterministic
per ``(seed, split, index)``; the splits use disjoint seed streams.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..labelsets import SYNTHETIC8_NAMES
from ..tasks import TaskSpec
from .base import LabelledDataset
from .sample import task_field

SYNTHETIC_CLASSES = SYNTHETIC8_NAMES  # the class names of the scenes (hydranet.labelsets)
CLASS_ID = {name: i for i, name in enumerate(SYNTHETIC_CLASSES)}
OBJECT_CLASSES = SYNTHETIC_CLASSES[3:]
#: the shape each object class is drawn with
CLASS_SHAPE = {"box": "box", "cabinet": "box", "ball": "sphere", "cylinder": "cylinder", "table": "table"}
# Each rendered field and the task kind that reads it.
FIELD_KINDS = {
    "segmentation": "segmentation",
    "depth": "depth",
    "normals": "normals",
    "count": "regression",
    "dominant": "classification",
}
SYNTHETIC_FIELDS = tuple(FIELD_KINDS)
SPLIT_STREAM = {"train": 0, "val": 1, "test": 2}
MAX_DEPTH = 10.0
_EPS = 1e-4


def synthetic_tasks() -> list[TaskSpec]:
    """The default tasks of the synthetic set: ``segm``, ``depth``, ``normals`` (dense) and
    ``count`` (regression, 1 value) and ``dominant`` (classification) per image."""
    n = len(SYNTHETIC_CLASSES)
    return [
        TaskSpec("segm", "segmentation", classes=n, class_names=SYNTHETIC_CLASSES),
        TaskSpec("depth", "depth", options={"max_depth": MAX_DEPTH}),
        TaskSpec("normals", "normals"),
        TaskSpec("count", "regression", outputs=1),
        TaskSpec("dominant", "classification", classes=n, class_names=SYNTHETIC_CLASSES),
    ]


# --------------------------------------------------------------------------- scene sampling


def _rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _object_colour(rng: np.random.Generator, cls: str) -> list:
    """A class-typical base colour (RGB in 0..1) with some random variation."""
    base = {
        "box": (0.62, 0.45, 0.28),  # cardboard
        "cabinet": (0.80, 0.78, 0.72),  # painted wood
        "ball": None,  # any saturated colour
        "cylinder": (0.35, 0.45, 0.65),  # bluish metal
        "table": (0.50, 0.32, 0.18),  # dark wood
    }[cls]
    if base is None:
        hue = rng.uniform(0, 1)
        rgb = np.clip(np.abs(np.array([hue * 6 - 3, 2 - abs(hue * 6 - 2), 2 - abs(hue * 6 - 4)])) - [1, 0, 0], 0, 1)
        rgb = 0.25 + 0.7 * rgb
    else:
        rgb = np.clip(np.array(base) + rng.normal(0, 0.07, 3), 0.05, 0.95)
    return [float(v) for v in rgb]


def _sample_object(rng: np.random.Generator, cls: str, x: float, z: float) -> dict:
    yaw = float(rng.uniform(-45, 45))
    tex = {"kind": str(rng.choice(["plain", "checker", "stripes", "noise"])), "scale": float(rng.uniform(0.08, 0.3))}
    obj = {"class": cls, "yaw": yaw, "color": _object_colour(rng, cls), "texture": tex}
    if cls == "box":
        s = rng.uniform(0.3, 0.8, 3) * [1, rng.uniform(0.6, 1.1), 1]
        obj.update(size=[float(v) for v in s], center=[x, float(s[1] / 2), z])
    elif cls == "cabinet":
        s = [rng.uniform(0.5, 1.0), rng.uniform(1.1, 1.9), rng.uniform(0.35, 0.6)]
        obj.update(size=[float(v) for v in s], center=[x, float(s[1] / 2), z])
    elif cls == "ball":
        r = float(rng.uniform(0.15, 0.45))
        obj.update(radius=r, center=[x, r, z])
    elif cls == "cylinder":
        r, h = float(rng.uniform(0.12, 0.35)), float(rng.uniform(0.4, 1.2))
        obj.update(radius=r, height=h, center=[x, h / 2, z])
    else:  # table
        s = [rng.uniform(0.8, 1.5), rng.uniform(0.68, 0.8), rng.uniform(0.6, 1.0)]
        obj.update(size=[float(v) for v in s], center=[x, float(s[1] / 2), z])
    return obj


def _footprint(obj: dict) -> float:
    """Radius of a circle on the floor that contains the object."""
    if "radius" in obj:
        return obj["radius"]
    sx, _, sz = obj["size"]
    return 0.5 * math.hypot(sx, sz)


def sample_scene(
    rng: np.random.Generator, max_objects: int = 6, keep_clear: Sequence[Sequence[float]] = (), clearance: float = 0.9
) -> dict:
    """Draw a random scene (plain data) from ``rng``.

    The returned mapping has ``room`` (width, depth, height: x in [-w/2, w/2], z in [0, depth],
    y in [0, height]), ``camera`` (position, yaw, pitch, hfov in degrees), ``light``
    (direction towards the light, ambient), ``floor``/``wall`` styles, ``objects`` (each with
    ``class``, ``center``, ``size`` or ``radius``/``height``, ``yaw``, ``color``, ``texture``)
    and ``seed`` (for the texture noise). Objects keep ``clearance`` metres from the camera and
    from the floor points in ``keep_clear`` (x, z), and stand in front of the camera.
    """
    width, depth, height = rng.uniform(4.0, 7.0), rng.uniform(5.5, 9.0), rng.uniform(2.5, 3.2)
    cam = [float(rng.uniform(-width / 5, width / 5)), float(rng.uniform(1.1, 1.7)), float(rng.uniform(0.3, 0.9))]
    yaw, pitch, hfov = float(rng.uniform(-20, 20)), float(rng.uniform(-28, -8)), 60.0
    scene = {
        "room": {"width": float(width), "depth": float(depth), "height": float(height)},
        "camera": {"position": cam, "yaw": yaw, "pitch": pitch, "hfov": hfov},
        "light": {
            "direction": [float(rng.uniform(-0.6, 0.6)), 1.0, float(rng.uniform(-0.8, 0.3))],
            "ambient": float(rng.uniform(0.3, 0.45)),
        },
        "floor": {
            "colors": [
                list(np.clip(c + rng.normal(0, 0.05, 3), 0, 1).round(3))
                for c in ([0.55, 0.42, 0.30], [0.42, 0.31, 0.22])
            ]
            if rng.random() < 0.5
            else [
                list(np.clip(c + rng.normal(0, 0.05, 3), 0, 1).round(3))
                for c in ([0.78, 0.78, 0.75], [0.35, 0.36, 0.38])
            ],
            "tile": float(rng.uniform(0.3, 0.8)),
        },
        "wall": {
            "color": [float(v) for v in np.clip(np.array([0.82, 0.80, 0.74]) + rng.normal(0, 0.07, 3), 0, 1)],
            "stripes": bool(rng.random() < 0.4),
        },
        "seed": int(rng.integers(0, 2**31 - 1)),
        "objects": [],
    }
    clear = [tuple(p) for p in keep_clear] + [(cam[0], cam[2])]
    n = int(rng.integers(1, max_objects + 1)) if max_objects > 0 else 0
    placed = []
    for _ in range(n):
        cls = str(rng.choice(OBJECT_CLASSES))
        for _attempt in range(20):
            dist = rng.uniform(1.3, max(1.5, depth - cam[2] - 0.6))
            ang = math.radians(yaw + rng.uniform(-0.42, 0.42) * hfov)
            x, z = cam[0] + dist * math.sin(ang), cam[2] + dist * math.cos(ang)
            obj = _sample_object(rng, cls, float(x), float(z))
            r = _footprint(obj)
            inside = abs(x) + r < width / 2 - 0.05 and r + 0.05 < z < depth - r - 0.05
            free = all(math.hypot(x - ox, z - oz) > r + orad + 0.05 for ox, oz, orad in placed)
            clear_ok = all(math.hypot(x - cx, z - cz) > r + clearance for cx, cz in clear)
            if inside and free and clear_ok:
                placed.append((x, z, r))
                scene["objects"].append(obj)
                break
    return scene


# --------------------------------------------------------------------------- ray casting


def _camera_frame(cam: Mapping) -> np.ndarray:
    """3 x 3 matrix whose columns are the camera's right, down and forward axes in world coordinates."""
    yaw, pitch = math.radians(cam.get("yaw", 0.0)), math.radians(cam.get("pitch", 0.0))
    fwd = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), math.cos(yaw) * math.cos(pitch)])
    right = np.array([math.cos(yaw), 0.0, -math.sin(yaw)])
    down = np.cross(right, fwd)
    return np.stack([right, down, fwd], axis=1)


def camera_rays(cam: Mapping, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """World-space ray directions as 3 planes (3 x H x W; camera-z component 1, so the ray
    parameter of a hit is its depth) and the camera frame matrix (see :func:`_camera_frame`)."""
    h, w = int(size[0]), int(size[1])
    f = 0.5 * w / math.tan(math.radians(cam.get("hfov", 60.0)) / 2)
    u = ((np.arange(w, dtype=np.float32) + 0.5 - w / 2) / f)[None, :]
    v = ((np.arange(h, dtype=np.float32) + 0.5 - h / 2) / f)[:, None]
    frame = _camera_frame(cam).astype(np.float32)
    d = np.empty((3, h, w), dtype=np.float32)
    for k in range(3):
        d[k] = frame[k, 0] * u + frame[k, 1] * v + frame[k, 2]
    return d, frame


def _safe_inv(d: np.ndarray) -> np.ndarray:
    d = np.where(np.abs(d) < 1e-9, np.float32(1e-9), d)
    return np.float32(1.0) / d


_INF = np.float32(np.inf)


def _hit_box(o: np.ndarray, d: np.ndarray, center, half, yaw: float) -> np.ndarray:
    """Ray parameter of the first hit with a box turned by ``yaw`` about the vertical (inf = miss)."""
    a = math.radians(yaw)
    c, s = np.float32(math.cos(a)), np.float32(math.sin(a))
    rel = o - np.asarray(center, np.float64)
    o_l = (c * rel[0] - s * rel[2], rel[1], s * rel[0] + c * rel[2])  # R^T (o - center)
    d_l = (c * d[0] - s * d[2], d[1], s * d[0] + c * d[2])
    tmin = tmax = None
    for k in range(3):
        inv = _safe_inv(d_l[k])
        t1 = (np.float32(-half[k] - o_l[k])) * inv
        t2 = (np.float32(half[k] - o_l[k])) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        tmin = lo if tmin is None else np.maximum(tmin, lo)
        tmax = hi if tmax is None else np.minimum(tmax, hi)
    return np.where((tmax >= tmin) & (tmin > _EPS), tmin, _INF)


def _hit_sphere(o: np.ndarray, d: np.ndarray, center, radius: float) -> np.ndarray:
    oc = (o - np.asarray(center, np.float64)).astype(np.float32)
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = d[0] * oc[0] + d[1] * oc[1] + d[2] * oc[2]
    c = np.float32(oc @ oc - radius * radius)
    disc = b * b - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0))) / a
    return np.where((disc >= 0) & (t > _EPS), t, _INF)


def _hit_cylinder(o: np.ndarray, d: np.ndarray, center, radius: float, height: float) -> np.ndarray:
    """A vertical capped cylinder; ``center`` is its geometric centre."""
    cx, cy, cz = center
    y0, y1 = cy - height / 2, cy + height / 2
    ox, oz = np.float32(o[0] - cx), np.float32(o[2] - cz)
    dx, dy, dz = d[0], d[1], d[2]
    a = dx * dx + dz * dz
    b = dx * ox + dz * oz
    c = np.float32(ox * ox + oz * oz - radius * radius)
    disc = b * b - a * c
    t_side = (-b - np.sqrt(np.maximum(disc, 0))) / np.maximum(a, np.float32(1e-12))
    y = np.float32(o[1]) + t_side * dy
    t = np.where((disc >= 0) & (t_side > _EPS) & (y >= y0) & (y <= y1), t_side, _INF)
    inv_dy = _safe_inv(dy)
    r2 = np.float32(radius * radius)
    for yc in (y0, y1):
        tc = np.float32(yc - o[1]) * inv_dy
        px, pz = ox + tc * dx, oz + tc * dz
        ok = (tc > _EPS) & (px * px + pz * pz <= r2) & (tc < t)
        t = np.where(ok, tc, t)
    return t


def _primitives(obj: Mapping) -> list[tuple]:
    """The primitives of one object: ("box", center, half, yaw) | ("sphere", center, r) | ("cylinder", center, r, h)."""
    shape = obj.get("shape") or CLASS_SHAPE[_class_name(obj["class"])]
    c = [float(v) for v in obj["center"]]
    yaw = float(obj.get("yaw", 0.0))
    if shape == "box":
        return [("box", c, [s / 2 for s in obj["size"]], yaw)]
    if shape == "sphere":
        return [("sphere", c, float(obj["radius"]))]
    if shape == "cylinder":
        return [("cylinder", c, float(obj["radius"]), float(obj["height"]))]
    if shape == "table":
        w, h, dpt = (float(v) for v in obj["size"])
        top, leg = 0.06, 0.06
        base_y = c[1] - h / 2
        rot = _rot_y(yaw)
        prims = [("box", [c[0], base_y + h - top / 2, c[2]], [w / 2, top / 2, dpt / 2], yaw)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                off = rot @ np.array([sx * (w / 2 - leg), 0.0, sz * (dpt / 2 - leg)])
                prims.append(
                    (
                        "box",
                        [c[0] + off[0], base_y + (h - top) / 2, c[2] + off[2]],
                        [leg / 2, (h - top) / 2, leg / 2],
                        yaw,
                    )
                )
        return prims
    raise ConfigError(f"synthetic scene: unknown object shape {shape!r} (box, sphere, cylinder, table)")


def _class_name(cls) -> str:
    if isinstance(cls, str):
        if cls not in CLASS_ID:
            raise ConfigError(f"synthetic scene: unknown class {cls!r}; classes: {', '.join(SYNTHETIC_CLASSES)}")
        return cls
    return SYNTHETIC_CLASSES[int(cls)]


def _normal_at(prim: tuple, p: np.ndarray) -> np.ndarray:
    """Outward world normals of a primitive at hit points ``p`` (M x 3)."""
    kind = prim[0]
    c = np.asarray(prim[1], np.float32)
    if kind == "sphere":
        n = p - c
    elif kind == "cylinder":
        r, h = prim[2], prim[3]
        q = p - c
        radial = np.sqrt(q[:, 0] ** 2 + q[:, 2] ** 2)
        cap = np.abs(np.abs(q[:, 1]) - h / 2) < np.abs(radial - r)  # nearer a cap than the side
        n = np.stack([q[:, 0], np.zeros_like(radial), q[:, 2]], axis=1)
        n[cap] = 0.0
        n[cap, 1] = np.sign(q[cap, 1])
    else:  # box: the face whose slab the point lies on
        rot = _rot_y(prim[3]).astype(np.float32)
        q = ((p - c) @ rot) / np.asarray(prim[2], np.float32)
        axis = np.abs(q).argmax(axis=1)
        rows = np.arange(len(q))
        n_l = np.zeros_like(q)
        n_l[rows, axis] = np.sign(q[rows, axis])
        n = n_l @ rot.T
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def _noise_field(points: np.ndarray, seed: int, count: int = 4) -> np.ndarray:
    """Smooth pseudo-random values in [-1, 1] at world points (3 x H x W): a sum of plane waves."""
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(count, 3))
    k *= (rng.uniform(2.0, 9.0, count) / np.linalg.norm(k, axis=1))[:, None]
    phase = rng.uniform(0, 2 * np.pi, count)
    out = np.zeros(points.shape[1:], np.float32)
    for (kx, ky, kz), ph in zip(k.astype(np.float32), phase.astype(np.float32)):
        out += np.sin(kx * points[0] + ky * points[1] + kz * points[2] + ph)
    return out / np.float32(count)


def _texture(kind: str, scale: float, q: np.ndarray, colour: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Albedo (M x 3) of points ``q`` (object-local coordinates); ``noise`` is the field at them."""
    if kind == "checker":
        parity = (np.floor(q / scale).sum(axis=1) % 2)[:, None]
        return colour * (0.75 + 0.25 * parity)
    if kind == "stripes":
        return colour * (0.8 + 0.2 * (np.sin(q[:, 1] * (2 * np.pi / scale)) > 0))[:, None]
    if kind == "noise":
        return colour * (0.8 + 0.2 * np.sin(noise * (3.0 / max(scale, 0.05))))[:, None]
    return colour * (0.96 + 0.04 * noise)[:, None]


def render_scene(params: Mapping, size: Sequence[int] = (480, 640), noise: float = 2.0) -> dict:
    """Ray-cast a scene (see :func:`sample_scene`) at ``size`` = (H, W).

    Returns a dict of numpy arrays: ``rgb`` uint8 H x W x 3, ``depth`` float32 H x W (metres,
    camera z), ``segmentation`` uint8 H x W (:data:`SYNTHETIC_CLASSES` ids), ``normals``
    float32 H x W x 3 (camera frame, x right, y up, z towards the viewer), ``instances`` int32
    H x W (0 = room, i = object i-1), plus ``count`` (float) and ``dominant`` (int, or None
    when no object is visible). ``noise`` is the standard deviation of the sensor noise
    added to the image (in 0..255 units).
    """
    h, w = int(size[0]), int(size[1])
    cam = params["camera"]
    origin = np.asarray(cam["position"], dtype=np.float64)
    d, frame = camera_rays(cam, (h, w))

    room = params.get("room")
    best_t, face = _room_exit(room, origin, d)
    objects = list(params.get("objects", []))
    prims, prim_obj = [], []
    for i, obj in enumerate(objects):
        for prim in _primitives(obj):
            prims.append(prim)
            prim_obj.append(i)
    best_t, best_prim = _nearest_primitive(prims, origin, d, best_t)

    hit_any = np.isfinite(best_t)
    depth = np.where(hit_any, best_t, np.float32(0.0))
    points = origin.astype(np.float32)[:, None, None] + d * depth[None]  # 3 x H x W world points
    field = _noise_field(points, int(params.get("seed", 0)))
    surface = {
        "normals": np.zeros((h, w, 3), np.float32),  # world frame
        "albedo": np.zeros((h, w, 3), np.float32),
        "labels": np.full((h, w), 255, np.uint8),
        "instances": np.full((h, w), -1, np.int32),
    }
    room_px = hit_any & (best_prim < 0)
    if room is not None and room_px.any():
        _paint_room(params, room_px, face, d, points, field, surface)
    for k, prim in enumerate(prims):
        px = best_prim == k
        if px.any():
            _paint_object(prim, objects[prim_obj[k]], prim_obj[k] + 1, px, points, field, surface)

    rgb = _shade(params, surface["albedo"], surface["normals"], d, depth, noise)
    # normals in the camera frame: OpenCV axes (x right, y down, z forward) -> x right, y up, z back
    n_cv = surface["normals"] @ frame
    n_cv[..., 1:] *= -1
    normals = np.ascontiguousarray(n_cv, dtype=np.float32)

    instances = surface["instances"]
    areas = np.bincount(instances[instances > 0].ravel(), minlength=len(objects) + 1)[1:]
    visible = np.flatnonzero(areas > 0)
    dominant = None
    if visible.size:
        dominant = CLASS_ID[_class_name(objects[int(np.argmax(areas))]["class"])]
    return {
        "rgb": rgb,
        "depth": depth.astype(np.float32),
        "segmentation": surface["labels"],
        "normals": normals,
        "instances": instances,
        "count": float(visible.size),
        "dominant": dominant,
    }


def _room_exit(room: Optional[Mapping], origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The room, seen from inside: distance to the face where each ray leaves its box
    (infinite without a room, or from outside it) and that face's axis (0, 1, 2)."""
    h, w = d.shape[1:]
    face = np.zeros((h, w), np.int8)
    if room is None:
        return np.full((h, w), _INF, np.float32), face
    lo = (-room["width"] / 2, 0.0, 0.0)
    hi = (room["width"] / 2, room["height"], room["depth"])
    best_t = None
    for k in range(3):
        inv = _safe_inv(d[k])
        t_k = np.where(d[k] > 0, np.float32(hi[k] - origin[k]) * inv, np.float32(lo[k] - origin[k]) * inv)
        if best_t is None:
            best_t = t_k
        else:
            nearer = t_k < best_t
            best_t = np.where(nearer, t_k, best_t)
            face[nearer] = k
    return np.where(best_t > 0, best_t, _INF), face  # camera outside the room sees nothing of it


def _nearest_primitive(prims: list, origin: np.ndarray, d: np.ndarray, best_t: np.ndarray) -> tuple:
    """The z-buffer: for each ray, the nearest hit (distance) and the primitive hit (-1: the room)."""
    best_prim = np.full(best_t.shape, -1, np.int16)
    for k, prim in enumerate(prims):
        if prim[0] == "box":
            t = _hit_box(origin, d, prim[1], prim[2], prim[3])
        elif prim[0] == "sphere":
            t = _hit_sphere(origin, d, prim[1], prim[2])
        else:
            t = _hit_cylinder(origin, d, prim[1], prim[2], prim[3])
        nearer = t < best_t
        best_t = np.where(nearer, t, best_t)
        best_prim[nearer] = k
    return best_t, best_prim


def _paint_room(params: Mapping, room_px, face, d, points, field, surface: dict) -> None:
    """Normals, labels (floor, ceiling, wall), instance 0 and albedo of the room's pixels."""
    f = face[room_px].astype(np.int64)
    rows = np.arange(f.size)
    dir_sign = np.sign(d[:, room_px].T[rows, f])
    n = np.zeros((f.size, 3), np.float32)
    n[rows, f] = -dir_sign  # facing into the room
    surface["normals"][room_px] = n
    floor = (f == 1) & (dir_sign < 0)
    ceiling = (f == 1) & (dir_sign > 0)
    surface["labels"][room_px] = np.where(
        floor, CLASS_ID["floor"], np.where(ceiling, CLASS_ID["ceiling"], CLASS_ID["wall"])
    )
    surface["instances"][room_px] = 0
    p = points[:, room_px].T
    nz = field[room_px]
    fstyle = params.get("floor", {})
    colours = np.asarray(fstyle.get("colors", [[0.55, 0.42, 0.30], [0.42, 0.31, 0.22]]), np.float32)
    tile = float(fstyle.get("tile", 0.5))
    parity = ((np.floor(p[:, 0] / tile) + np.floor(p[:, 2] / tile)) % 2).astype(np.int64)
    wstyle = params.get("wall", {})
    wall_mod = 0.94 + 0.06 * nz
    if wstyle.get("stripes"):
        wall_mod = wall_mod * (0.9 + 0.1 * (np.sin((p[:, 0] + p[:, 2]) * 12.0) > 0))
    wall_mod = np.where(p[:, 1] < 0.12, 0.55, wall_mod)  # skirting board
    alb = np.asarray(wstyle.get("color", [0.82, 0.80, 0.74]), np.float32) * wall_mod[:, None]
    alb[floor] = colours[parity[floor]] * (0.92 + 0.08 * nz[floor])[:, None]
    alb[ceiling] = 0.92
    surface["albedo"][room_px] = alb


def _paint_object(prim: tuple, obj: Mapping, instance: int, px, points, field, surface: dict) -> None:
    """Normals, label, instance id and textured albedo of the pixels ``px`` where ``prim`` (of ``obj``) is nearest."""
    p = points[:, px].T
    surface["normals"][px] = _normal_at(prim, p)
    surface["labels"][px] = CLASS_ID[_class_name(obj["class"])]
    surface["instances"][px] = instance
    rot = _rot_y(float(obj.get("yaw", 0.0))).astype(np.float32)
    q = (p - np.asarray(obj["center"], np.float32)) @ rot
    tex = obj.get("texture", {}) or {}
    surface["albedo"][px] = _texture(
        tex.get("kind", "plain"),
        float(tex.get("scale", 0.2)),
        q,
        np.asarray(obj.get("color", [0.6, 0.6, 0.6]), np.float32),
        field[px],
    )


def _shade(params: Mapping, albedo, normals_w, d, depth, noise: float) -> np.ndarray:
    """The uint8 image: a directional light plus a weak headlight (Lambertian), fading with
    distance, then sensor noise of standard deviation ``noise``."""
    light = params.get("light", {})
    ldir = np.asarray(light.get("direction", [0.3, 1.0, -0.4]), np.float32)
    ldir = ldir / np.linalg.norm(ldir)
    ambient = np.float32(light.get("ambient", 0.35))
    diffuse = np.clip(normals_w @ ldir, 0, None)
    inv_len = np.float32(1.0) / np.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    head = np.clip(-(normals_w[..., 0] * d[0] + normals_w[..., 1] * d[1] + normals_w[..., 2] * d[2]) * inv_len, 0, None)
    shade = (ambient + (1 - ambient) * np.float32(0.75) * diffuse + np.float32(0.3) * head) / (
        1 + np.float32(0.04) * depth
    )
    rgb = albedo * (shade * np.float32(255.0))[..., None]
    if noise > 0:
        rng = np.random.default_rng(int(params.get("seed", 0)) + 7919)
        rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- a camera path


def render_clip(num_frames: int, size: Sequence[int] = (240, 320), seed: int = 0) -> list[tuple]:
    """Render ``num_frames`` frames of one scene while the camera glides through it.

    The camera moves forward about a metre with a gentle sideways sway and pans its yaw
    smoothly; objects are placed clear of its path. Returns a list of
    ``(rgb uint8 H x W x 3, depth float32 H x W metres, labels uint8 H x W)``.
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 99]))
    scene = sample_scene(rng, max_objects=6)
    cam0 = scene["camera"]
    x0, y0, z0 = cam0["position"]
    width = scene["room"]["width"]
    forward = min(1.2, scene["room"]["depth"] - z0 - 2.5)
    sway = min(0.35, width / 2 - abs(x0) - 0.3)
    path = []
    for i in range(num_frames):
        s = i / max(1, num_frames - 1)
        path.append(
            (
                x0 + sway * math.sin(2 * math.pi * s),
                y0 + 0.05 * math.sin(4 * math.pi * s),
                z0 + forward * (0.5 - 0.5 * math.cos(math.pi * s)),
                cam0["yaw"] + 12.0 * math.sin(2 * math.pi * s + 0.5),
                cam0["pitch"],
            )
        )
    # re-place the objects away from the whole path (same scene otherwise)
    clear = [(p[0], p[2]) for p in path[:: max(1, num_frames // 16)]] + [(path[-1][0], path[-1][2])]
    scene = sample_scene(
        np.random.default_rng(np.random.SeedSequence([int(seed), 99])), max_objects=6, keep_clear=clear, clearance=1.0
    )
    frames = []
    for x, y, z, yaw, pitch in path:
        params = dict(scene)
        params["camera"] = {"position": [x, y, z], "yaw": yaw, "pitch": pitch, "hfov": cam0["hfov"]}
        out = render_scene(params, size)
        frames.append((out["rgb"], out["depth"], out["segmentation"]))
    return frames


# --------------------------------------------------------------------------- the dataset


class SyntheticScenes(LabelledDataset):
    """Procedural indoor scenes rendered on the fly (see the module docstring).

    Args:
        num_samples: length of the dataset.
        size: (H, W) of the rendered images.
        seed: base seed; item ``i`` of split ``s`` is drawn from the stream ``(seed, s, i)``.
        tasks: task specs (default :func:`synthetic_tasks`); dense tasks read the field of
            their kind, image-level tasks ``count``/``dominant`` by name (or ``fields``).
        transform: ``transform(raw_sample, tasks) -> item``.
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seed streams).
        fields: ``{task name: field}`` overrides; fields are ``segmentation``, ``depth``,
            ``normals``, ``count``, ``dominant``.
        max_objects: at most this many objects per scene (at least one).
        label_dropout: ``{task name: probability}`` of leaving that label out of an item, to
            simulate asymmetric annotations (deterministic per item).
    """

    def __init__(
        self,
        num_samples: int,
        size: Sequence[int] = (64, 64),
        seed: int = 0,
        tasks: Optional[Sequence[TaskSpec]] = None,
        transform: Optional[Callable] = None,
        split: str = "train",
        fields: Optional[Mapping[str, str]] = None,
        max_objects: int = 6,
        label_dropout: Optional[Mapping[str, float]] = None,
    ):
        super().__init__(synthetic_tasks() if tasks is None else tasks, fields, transform)
        if split not in SPLIT_STREAM:
            raise ConfigError(f"synthetic split {split!r}: valid splits are {', '.join(SPLIT_STREAM)}")
        if int(num_samples) < 1:
            raise ConfigError(f"synthetic num_samples must be positive, got {num_samples}")
        self.num_samples = int(num_samples)
        self.size = (int(size[0]), int(size[1])) if not isinstance(size, int) else (int(size), int(size))
        self.seed, self.split, self.max_objects = int(seed), split, int(max_objects)
        self.sources = {}
        for spec in self.tasks:
            field = task_field(spec, self.fields)
            if field not in SYNTHETIC_FIELDS:
                how = "its data set's fields map it there" if spec.name in self.fields else "tasks[].name, by default"
                raise ConfigError(
                    f"task {spec.name!r}: the synthetic set has no field {field!r} (the field a task reads: "
                    f"{how}); fields: {', '.join(SYNTHETIC_FIELDS)}"
                )
            need = FIELD_KINDS[field]
            if spec.kind != need:
                raise ConfigError(
                    f"task {spec.name!r} ({spec.kind}) cannot read the synthetic field {field!r} ({need})"
                )
            if field in ("segmentation", "dominant") and spec.classes < len(SYNTHETIC_CLASSES):
                raise ConfigError(
                    f"task {spec.name!r}: the synthetic set has {len(SYNTHETIC_CLASSES)} "
                    f"classes, the task only {spec.classes}"
                )
            if field == "count" and spec.outputs != 1:
                raise ConfigError(f"task {spec.name!r}: 'count' is one value, the task has outputs={spec.outputs}")
            self.sources[spec.name] = field
        self.label_dropout = dict(label_dropout or {})
        unknown = set(self.label_dropout) - set(self.sources)
        if unknown:
            raise ConfigError(f"label_dropout: unknown task(s) {sorted(unknown)}")

    def __len__(self) -> int:
        return self.num_samples

    def sample_id(self, index: int) -> str:
        return f"synthetic/{self.split}/{index:06d}"

    def scene(self, index: int) -> dict:
        """The scene parameters of item ``index`` (deterministic)."""
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, SPLIT_STREAM[self.split], int(index)]))
        return sample_scene(rng, max_objects=self.max_objects)

    def load_raw(self, index: int) -> tuple[dict, dict]:
        out = render_scene(self.scene(index), self.size)
        sample = {"image": out["rgb"], "id": self.sample_id(index)}
        drop_rng = np.random.default_rng(np.random.SeedSequence([self.seed, SPLIT_STREAM[self.split], int(index), 1]))
        drops = {name: drop_rng.random() for name in sorted(self.label_dropout)}
        for spec in self.tasks:
            if drops.get(spec.name, 1.0) < self.label_dropout.get(spec.name, 0.0):
                continue
            value = out[self.sources[spec.name]]
            if value is None:
                continue
            sample[spec.name] = [value] if self.sources[spec.name] == "count" else value
        return sample, {"image": self.sample_id(index)}
