"""Drawing predictions: class palettes, colour maps, overlays, legends and depth scale bars.

Every function takes and returns NumPy arrays; images are RGB ``uint8`` ``H x W x 3`` (not
OpenCV's BGR: convert with ``img[..., ::-1]`` before ``cv2.imwrite``).

Palettes are ``(classes, 3)`` uint8 arrays indexed by class id:

* **NYUD-40** (:data:`NYUD40_PALETTE`): the PASCAL VOC bit-interleaved colour map, shifted by
  one as in the authors' ``cmap_nyud.npy`` (their notebooks draw ``cmap[argmax + 1]``): class
  id ``i`` gets VOC colour ``i + 1``, so colour 0 (black) is left for unlabelled / ignore (255).
* **KITTI/Cityscapes-19** (:data:`CITYSCAPES19_PALETTE`): the Cityscapes ``trainId`` colours.
* **KITTI-6** (:data:`KITTI6_PALETTE`): the authors' ``cmap_kitti.npy`` (their notebooks draw
  ``cmap[argmax]``, no shift): channel ``i`` gets row ``i``. The class names of the original
  KITTI-6 checkpoint are unknown (see ``weights/README.md``), so these are colours for
  channels 0..5, not a claim about what the classes are.
* **synthetic-8** (:data:`SYNTHETIC8_PALETTE`): the built-in synthetic scene classes.

The tables live in :mod:`hydranet.labelsets` (re-exported here). :func:`palette_for` picks
one from a task spec by name: the task's own ``options.palette`` (a palette name, a file or
rows; a checkpoint carries it: converted original checkpoints hold the authors' palettes),
then the palette of a known list of class names; otherwise the VOC colours 1..N. A class
count alone never picks a palette.
:func:`resolve_palette` adds a user's override (``--palette``: a name or a file). Ids outside
the palette (255 = ignore) are drawn black.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from .errors import ConfigError
from .labelsets import (
    CITYSCAPES19_NAMES,
    CITYSCAPES19_PALETTE,
    KITTI6_PALETTE,
    KNOWN_NAMES,
    NAMED_PALETTES,
    NYUD40_NAMES,
    NYUD40_PALETTE,
    SYNTHETIC8_NAMES,
    SYNTHETIC8_PALETTE,
    voc_colormap,
)
from .tasks import DrawStyle
from .vocabulary import DEPTH_CMAPS

__all__ = [
    "voc_colormap",
    "NYUD40_NAMES",
    "NYUD40_PALETTE",
    "CITYSCAPES19_NAMES",
    "CITYSCAPES19_PALETTE",
    "KITTI6_PALETTE",
    "SYNTHETIC8_NAMES",
    "SYNTHETIC8_PALETTE",
    "palette_for",
    "class_names_for",
    "NAMED_PALETTES",
    "resolve_palette",
    "colorize_segmentation",
    "overlay",
    "colorize_depth",
    "depth_scale_bar",
    "normals_to_rgb",
    "draw_legend",
    "legend_height",
    "present_classes",
    "put_label",
    "nice_ceil",
    "font_scale_for",
    "hstack",
    "DEPTH_CMAPS",
    "DrawStyle",
    "drawn_tasks",
    "blend_overlay",
    "render_figure",
    "figure_columns",
    "grid",
]

IGNORE_COLOR = (0, 0, 0)
BACKGROUND = (32, 32, 32)  # panels (scale bar, legend)
TEXT_COLOR = (255, 255, 255)


# --------------------------------------------------------------------------- palettes


def _task_classes(task) -> tuple[int, Optional[tuple]]:
    """(number of classes, class names or None) of a TaskSpec, an int or a list of names."""
    if isinstance(task, (int, np.integer)):
        return int(task), None
    if isinstance(task, (list, tuple)):
        return len(task), tuple(str(n) for n in task)
    names = getattr(task, "class_names", None)
    return int(task.classes), (tuple(names) if names else None)


def palette_for(task) -> np.ndarray:
    """The ``(classes, 3)`` uint8 palette of a segmentation task.

    ``task`` is a :class:`~hydranet.tasks.TaskSpec`, a class count or a list of class names.
    The task's ``options.palette`` first (a name of :data:`NAMED_PALETTES`, a file, or rows of
    R, G, B); then the palette of a known set of class names (NYUD-40, Cityscapes-19,
    synthetic-8); otherwise VOC colours 1..N (which are NYUD's). Never chosen by class count.
    """
    n, names = _task_classes(task)
    own = (getattr(task, "options", None) or {}).get("palette")
    if own is not None:
        return _palette_from(own, n, f"options.palette of task {getattr(task, 'name', '?')!r}")
    if names is not None and tuple(names) in KNOWN_NAMES:
        return NAMED_PALETTES[KNOWN_NAMES[tuple(names)]].copy()
    return voc_colormap(n + 1)[1:]


def _checked_palette(rows, classes: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: a palette is rows of three numbers 0..255 (R G B)") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{where}: a palette is rows of three numbers 0..255 (R G B), got shape {arr.shape}")
    if arr.min() < 0 or arr.max() > 255:
        raise ConfigError(f"{where}: colour values must lie in 0..255")
    if len(arr) < classes:
        raise ConfigError(f"{where}: {len(arr)} colours for {classes} classes")
    return arr[:classes].round().astype(np.uint8)


def resolve_palette(spec, task) -> np.ndarray:
    """The palette to draw ``task`` with: ``spec`` None -> :func:`palette_for`; else a name of
    :data:`NAMED_PALETTES`; a file (``.npy`` array, or text with one ``R G B`` row per class,
    commas allowed, ``#`` comments); or rows of R, G, B. Row ``i`` colours class ``i``; extra
    rows are ignored.

    Raises:
        ConfigError: unknown name, missing or malformed file, fewer colours than classes.
    """
    if spec is None or (isinstance(spec, str) and not spec):
        return palette_for(task)
    n, _ = _task_classes(task)
    return _palette_from(spec, n, "palette")


def _palette_from(spec, n: int, where: str) -> np.ndarray:
    """A palette name, file or rows (see :func:`resolve_palette`) as ``n`` checked colours."""
    if isinstance(spec, (str, Path)):
        key = str(spec)
        if key.lower() in NAMED_PALETTES:
            return _checked_palette(NAMED_PALETTES[key.lower()], n, f"palette {key!r}")
        path = Path(key).expanduser()
        if not path.is_file():
            raise ConfigError(f"palette {key!r}: neither a palette name ({', '.join(NAMED_PALETTES)}) nor a file")
        try:
            if path.suffix.lower() == ".npy":
                rows = np.load(path, allow_pickle=False)
            else:
                rows = [
                    [float(v) for v in line.split("#")[0].replace(",", " ").split()]
                    for line in path.read_text(encoding="utf-8").splitlines()
                    if line.split("#")[0].strip()
                ]
        except (OSError, ValueError) as exc:
            raise ConfigError(f"palette file {str(path)!r} cannot be read: {exc}") from exc
        return _checked_palette(rows, n, f"palette file {str(path)!r}")
    return _checked_palette(spec, n, where)


def class_names_for(task) -> tuple:
    """Class names of a segmentation/classification task: its own, else the known set's, else ``class i``."""
    n, names = _task_classes(task)
    if names:
        return names
    return {40: NYUD40_NAMES, 19: CITYSCAPES19_NAMES}.get(n, tuple(f"class {i}" for i in range(n)))


# --------------------------------------------------------------------------- segmentation


def colorize_segmentation(ids: np.ndarray, palette, ignore_color: Sequence[int] = IGNORE_COLOR) -> np.ndarray:
    """Class ids ``H x W`` -> RGB ``H x W x 3`` uint8; ids outside the palette (e.g. 255) get ``ignore_color``.

    ``palette`` is a ``(classes, 3)`` array or anything :func:`palette_for` takes.
    """
    palette = _as_palette(palette)
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"colorize_segmentation expects H x W class ids, got shape {ids.shape}")
    if ids.dtype == np.uint8 and len(palette) < 256:  # the predictor's ids: one table look-up
        lut = np.empty((256, 3), dtype=np.uint8)
        lut[:] = ignore_color
        lut[: len(palette)] = palette
        return _lookup_rgb(ids, lut)
    lut = np.empty((len(palette) + 1, 3), dtype=np.uint8)
    lut[:-1] = palette
    lut[-1] = ignore_color
    idx = ids.astype(np.int64)
    idx = np.where((idx >= 0) & (idx < len(palette)), idx, len(palette))
    return lut[idx]


def _lookup_rgb(idx: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """``lut[idx]`` for uint8 ``H x W`` indices and a ``256 x 3`` uint8 table (OpenCV's LUT:
    the same result as NumPy's fancy indexing, several times faster on video frames)."""
    import cv2

    idx = np.ascontiguousarray(idx)
    return cv2.LUT(cv2.merge([idx, idx, idx]), np.ascontiguousarray(lut).reshape(256, 1, 3))


def _as_palette(palette) -> np.ndarray:
    if isinstance(palette, np.ndarray) and palette.ndim == 2 and palette.shape[1] == 3:
        return palette.astype(np.uint8, copy=False)
    return palette_for(palette)


def overlay(
    frame: np.ndarray, colour_mask: np.ndarray, alpha: float = 0.5, valid: Optional[np.ndarray] = None
) -> np.ndarray:
    """Blend ``colour_mask`` over ``frame``: ``round((1 - alpha) * frame + alpha * colour)``.

    Rounding is half up (``floor(x + 0.5)``), computed in float64, so the result is exact and
    predictable (e.g. frame 100, colour 201, alpha 0.5 -> 151). Where ``valid`` (an ``H x W``
    bool mask) is False the frame is left unchanged (e.g. ignore pixels).
    """
    frame = np.asarray(frame)
    colour_mask = np.asarray(colour_mask)
    if frame.shape != colour_mask.shape or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(
            f"overlay needs two H x W x 3 images of the same size, got {frame.shape} and {colour_mask.shape}"
        )
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if alpha == 0.5 and frame.dtype == colour_mask.dtype == np.uint8:
        # the default opacity in integers: floor((f + c) / 2 + 0.5) == (f + c + 1) >> 1, a third of the time
        out = ((frame.astype(np.uint16) + colour_mask + 1) >> 1).astype(np.uint8)
    else:
        out = np.floor(frame.astype(np.float64) * (1.0 - alpha) + colour_mask.astype(np.float64) * alpha + 0.5)
        out = np.clip(out, 0, 255).astype(np.uint8)
    if valid is not None:
        out = np.where(np.asarray(valid, dtype=bool)[..., None], out, frame)
    return out


def present_classes(ids: np.ndarray, num_classes: int) -> list[int]:
    """Class ids present in ``ids`` (ignoring ids outside ``0..num_classes-1``), largest area first."""
    ids = np.asarray(ids)
    if ids.dtype == np.uint8 and 0 < ids.size < 2**24:  # the predictor's ids: OpenCV's histogram (exact in float32)
        import cv2

        flat = np.ascontiguousarray(ids).reshape(1, -1)
        counts = cv2.calcHist([flat], [0], None, [256], [0, 256]).ravel().astype(np.int64)[:num_classes]
    elif ids.dtype == np.uint8:
        counts = np.bincount(ids.ravel(), minlength=256)[:num_classes]
    else:
        ids = ids.astype(np.int64).ravel()
        counts = np.bincount(ids[(ids >= 0) & (ids < num_classes)], minlength=num_classes)
    order = np.argsort(-counts, kind="stable")
    return [int(c) for c in order if counts[c] > 0]


# --------------------------------------------------------------------------- depth and normals


@cache
def _cmap_lut(name: str) -> np.ndarray:
    """256 x 3 RGB uint8 lookup table of a colour map (OpenCV's, same as matplotlib's)."""
    import cv2

    codes = {
        "magma": "COLORMAP_MAGMA",
        "turbo": "COLORMAP_TURBO",
        "plasma": "COLORMAP_PLASMA",
        "inferno": "COLORMAP_INFERNO",
        "viridis": "COLORMAP_VIRIDIS",
    }
    if name not in codes:
        raise ValueError(f"unknown depth colour map {name!r}; valid: {', '.join(DEPTH_CMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, getattr(cv2, codes[name]))
    return np.ascontiguousarray(bgr[:, 0, ::-1])


def colorize_depth(
    depth: np.ndarray,
    max_depth: float,
    cmap: str = "magma",
    min_depth: float = 0.0,
    invalid_color: Sequence[int] = IGNORE_COLOR,
) -> np.ndarray:
    """Depth in metres ``H x W`` -> RGB uint8: ``min_depth`` is the dark end of ``cmap``,
    ``max_depth`` the bright end (values beyond are clipped). Non-finite or non-positive
    depth (no measurement) gets ``invalid_color``. The same mapping as :func:`depth_scale_bar`.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"colorize_depth expects H x W depth, got shape {depth.shape}")
    if not max_depth > min_depth:
        raise ValueError(f"max_depth ({max_depth}) must be greater than min_depth ({min_depth})")
    lut = _cmap_lut(cmap)
    valid = np.isfinite(depth) & (depth > 0)
    every = bool(valid.all())  # a network's depth: no pixel to mask, two passes fewer
    t = ((depth if every else np.where(valid, depth, min_depth)) - min_depth) / (max_depth - min_depth)
    idx = np.clip(np.rint(t * 255.0), 0, 255).astype(np.uint8)
    out = _lookup_rgb(idx, lut)
    if not every:
        out[~valid] = invalid_color
    return out


def _nice_step(span: float, max_ticks: int) -> float:
    """The smallest step of the form {1, 2, 2.5, 5} x 10^k giving at most ``max_ticks`` intervals."""
    max_ticks = max(1, max_ticks)
    raw = span / max_ticks
    exp = math.floor(math.log10(raw)) if raw > 0 else 0
    for mult in (1, 2, 2.5, 5, 10):
        step = mult * 10**exp
        if span / step <= max_ticks + 1e-9:
            return step
    return 10 ** (exp + 1)


def _fmt_metres(v: float, step: float) -> str:
    decimals = 0 if step >= 1 else min(3, max(1, -math.floor(math.log10(step) + 1e-9)))
    if step < 1 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1  # e.g. 0.25
    return f"{v:.{decimals}f} m"


def font_scale_for(height: int) -> float:
    """A legible OpenCV font scale for a panel of this height (0.4 at 240 px, at least 0.3)."""
    return max(0.3, min(1.0, 0.4 * height / 240.0))


MIN_LABELLED_BAR = 8  # rows a scale bar needs for tick labels; shorter bars are the gradient alone


def depth_scale_bar(
    height: int, max_depth: float, cmap: str = "magma", min_depth: float = 0.0, font_scale: Optional[float] = None
) -> np.ndarray:
    """A vertical colour bar ``height x W x 3`` (RGB uint8) with ticks labelled in metres.

    The top is ``max_depth`` (far), the bottom ``min_depth``; the colours are exactly those of
    :func:`colorize_depth` with the same arguments. Ticks fall on round values (steps of 1, 2,
    2.5 or 5 x 10^k), as many as fit legibly; the width follows from the longest label.
    """
    import cv2

    height = int(height)
    if height < 1:
        raise ValueError(f"depth_scale_bar needs a height of at least 1 pixel, got {height}")
    if not max_depth > min_depth:
        raise ValueError(f"max_depth ({max_depth}) must be greater than min_depth ({min_depth})")
    if height < MIN_LABELLED_BAR:  # no room for labels: the bare gradient, far at the top
        values = max_depth - np.arange(height) / max(1, height - 1) * (max_depth - min_depth)
        column = colorize_depth(np.maximum(values, 1e-6)[:, None].astype(np.float32), max_depth, cmap, min_depth)
        return np.ascontiguousarray(np.repeat(column, 6, axis=1))
    fs = font_scale or font_scale_for(height)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    (_, th), _ = cv2.getTextSize("0", font, fs, thick)
    pad = th // 2 + 2  # room above the top label and below the bottom one
    y0, y1 = pad, height - 1 - pad  # gradient rows: y0 = max_depth, y1 = min_depth
    span = max_depth - min_depth
    max_ticks = max(1, (y1 - y0) // max(1, int(2.2 * th)))
    step = _nice_step(span, max_ticks)
    ticks = [min_depth + k * step for k in range(int(math.floor(span / step + 1e-9)) + 1)]
    labels = [_fmt_metres(v, step) for v in ticks]
    text_w = max(cv2.getTextSize(s, font, fs, thick)[0][0] for s in labels)
    bar_w = max(6, height // 24)
    margin, tick_len = 4, 4
    width = margin + bar_w + tick_len + 2 + text_w + margin
    img = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)

    rows = np.arange(y0, y1 + 1)
    values = max_depth - (rows - y0) / max(1, y1 - y0) * span
    colours = colorize_depth(np.maximum(values, 1e-6)[:, None].astype(np.float32), max_depth, cmap, min_depth)
    img[y0 : y1 + 1, margin : margin + bar_w] = colours
    x_tick = margin + bar_w
    for v, s in zip(ticks, labels):
        y = int(round(y0 + (max_depth - v) / span * (y1 - y0)))
        cv2.line(img, (x_tick, y), (x_tick + tick_len - 1, y), TEXT_COLOR, 1)
        cv2.putText(img, s, (x_tick + tick_len + 2, y + th // 2), font, fs, TEXT_COLOR, thick, cv2.LINE_AA)
    return img


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """Unit normals (``H x W x 3`` or ``3 x H x W``) -> RGB uint8 ``round((n + 1) / 2 * 255)``.

    In Hydranet's camera frame (x right, y up, z towards the viewer) a surface facing the
    camera is (0, 0, 1) -> (128, 128, 255), light blue-violet; a floor (0, 1, 0) is green.
    """
    n = np.asarray(normals, dtype=np.float32)
    if n.ndim == 3 and n.shape[-1] != 3 and n.shape[0] == 3:
        n = n.transpose(1, 2, 0)
    if n.ndim != 3 or n.shape[-1] != 3:
        raise ValueError(f"normals_to_rgb expects H x W x 3 or 3 x H x W, got shape {np.shape(normals)}")
    return np.clip(np.floor((n + 1.0) * 0.5 * 255.0 + 0.5), 0, 255).astype(np.uint8)


def nice_ceil(value: float) -> float:
    """``value`` rounded up to 1, 2, 2.5 or 5 x 10^k (a readable scale-bar maximum)."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    exp = math.floor(math.log10(value))
    for mult in (1, 2, 2.5, 5, 10):
        if mult * 10**exp >= value * (1 - 1e-9):
            return float(mult * 10**exp)
    return float(10 ** (exp + 1))


# --------------------------------------------------------------------------- text and legends


def put_label(
    img: np.ndarray,
    text: str,
    org: tuple[int, int] = (4, 4),
    font_scale: Optional[float] = None,
    color: Sequence[int] = TEXT_COLOR,
    box: Sequence[int] = (0, 0, 0),
) -> np.ndarray:
    """Write ``text`` on ``img`` in place, top-left corner at ``org``, on a filled ``box``
    rectangle so it stays legible over any picture. Returns ``img``."""
    import cv2

    fs = font_scale or font_scale_for(img.shape[0])
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, fs, 1)
    x, y = int(org[0]), int(org[1])
    cv2.rectangle(img, (x, y), (x + tw + 6, y + th + base + 4), tuple(int(c) for c in box), -1)
    cv2.putText(img, text, (x + 3, y + th + 2), font, fs, tuple(int(c) for c in color), 1, cv2.LINE_AA)
    return img


def _legend_layout(labels: Sequence[str], font_scale: float):
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, th), base = cv2.getTextSize("Ag", font, font_scale, 1)
    row_h = th + base + 6
    sw = row_h - 4  # swatch side
    items = [(s, 4 + sw + 4 + cv2.getTextSize(s, font, font_scale, 1)[0][0] + 8) for s in labels]
    return row_h, sw, th, items


def draw_legend(
    class_ids: Iterable[int],
    names: Sequence[str],
    palette,
    font_scale: float = 0.45,
    width: Optional[int] = None,
    rows: Optional[int] = None,
) -> np.ndarray:
    """An RGB image listing ``class_ids`` as a colour swatch (the exact palette colour) and a name.

    Without ``width`` the entries are stacked one per row. With ``width`` they flow left to
    right and wrap into rows of that width. With ``rows`` as well the image has exactly
    that many rows; entries that do not fit are dropped and ``+N more`` closes the last row.
    An empty ``class_ids`` gives a panel reading ``(no classes)``.
    """
    import cv2

    palette = _as_palette(palette)
    ids = [int(c) for c in class_ids]
    labels = [str(names[c]) if c < len(names) else f"class {c}" for c in ids]
    row_h, sw, th, items = _legend_layout(labels or ["(no classes)"], font_scale)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if width is None:
        width = max(w for _, w in items) + 4
        n_rows = max(1, len(ids)) if rows is None else rows
        keep = len(ids) if len(ids) <= n_rows else n_rows - 1  # the last row then says "+N more"
        placed = [(i, 0, i) for i in range(keep)]
    else:
        placed, x, r = [], 0, 0
        for i, (_, w) in enumerate(items if ids else []):
            if x > 0 and x + w > width:
                r, x = r + 1, 0
            placed.append((i, x, r))
            x += w
        n_rows = (placed[-1][2] + 1 if placed else 1) if rows is None else rows
        if rows is not None and any(p[2] >= rows for p in placed):
            kept = [p for p in placed if p[2] < rows]
            more_w = cv2.getTextSize("+00 more", font, font_scale, 1)[0][0] + 8
            while kept and kept[-1][2] == rows - 1 and kept[-1][1] + items[kept[-1][0]][1] + more_w > width:
                kept.pop()
            placed = kept
    img = np.full((n_rows * row_h + 4, int(width), 3), BACKGROUND, dtype=np.uint8)
    for i, x, r in placed:
        y = 2 + r * row_h
        colour = tuple(int(v) for v in palette[ids[i]]) if ids[i] < len(palette) else IGNORE_COLOR
        cv2.rectangle(img, (x + 4, y + 2), (x + 4 + sw - 1, y + 2 + sw - 1), colour, -1)
        cv2.putText(
            img, labels[i], (x + 4 + sw + 4, y + 2 + th + (sw - th) // 2), font, font_scale, TEXT_COLOR, 1, cv2.LINE_AA
        )
    dropped = len(ids) - len(placed)
    if not ids:
        cv2.putText(img, "(no classes)", (4, 2 + th + 2), font, font_scale, TEXT_COLOR, 1, cv2.LINE_AA)
    elif dropped > 0:
        last_r = n_rows - 1
        x = max([px + items[i][1] for i, px, r in placed if r == last_r], default=0)
        cv2.putText(
            img,
            f"+{dropped} more",
            (x + 4, 2 + last_r * row_h + 2 + th + (sw - th) // 2),
            font,
            font_scale,
            TEXT_COLOR,
            1,
            cv2.LINE_AA,
        )
    return img


def legend_height(rows: int, font_scale: float) -> int:
    """Height in pixels of a :func:`draw_legend` image with ``rows`` rows."""
    row_h, _, _, _ = _legend_layout(["Ag"], font_scale)
    return rows * row_h + 4


def hstack(
    images: Sequence[np.ndarray], height: Optional[int] = None, gap: int = 0, fill: Sequence[int] = BACKGROUND
) -> np.ndarray:
    """Images side by side, top-aligned, padded with ``fill`` to the tallest (or ``height``)."""
    h = height or max(im.shape[0] for im in images)
    parts = []
    for k, im in enumerate(images):
        if im.shape[0] < h:
            im = np.concatenate([im, np.full((h - im.shape[0], im.shape[1], 3), fill, np.uint8)], axis=0)
        parts.append(im[:h])
        if gap and k < len(images) - 1:
            parts.append(np.full((h, gap, 3), fill, np.uint8))
    return np.concatenate(parts, axis=1)


# --------------------------------------------------------------------------- figures of predictions


def drawn_tasks(tasks: Sequence) -> tuple:
    """``(overlay task, map task)`` drawn in figures and videos: the first task whose kind
    blends over the frame (segmentation), and the ``"map"`` task of the lowest draw
    priority (depth before normals); either may be None."""
    overlay = next((t for t in tasks if t.task_kind.draw_role == "overlay"), None)
    maps = [t for t in tasks if t.task_kind.draw_role == "map"]
    return overlay, min(maps, key=lambda t: t.task_kind.draw_priority, default=None)


def blend_overlay(frame: np.ndarray, pred, task, style: DrawStyle) -> tuple:
    """``(frame with the overlay task's colours blended in, its legend or None)``; with no
    overlay task, ``(a copy of frame, None)``. Figures, the video demo and the web demo use it."""
    if task is None:
        return frame.copy(), None
    kind, value = task.task_kind, pred[task.name]
    return overlay(frame, kind.colour_mask(task, value, style), style.alpha), kind.legend(task, value, style)


MAX_STRIP_ASPECT = 4.5  # a figure wider than this (width / height) wraps its panels into rows
TARGET_ASPECT = 1.6  # ... and takes the number of columns that comes closest to this shape


def grid(panels: Sequence[np.ndarray], columns: int, gap: int = 4, fill: Sequence[int] = BACKGROUND) -> np.ndarray:
    """Panels in rows of ``columns``, left to right then top to bottom; rows padded to the widest."""
    rows = [hstack(panels[i : i + columns], gap=gap, fill=fill) for i in range(0, len(panels), columns)]
    width = max(r.shape[1] for r in rows)
    parts = []
    for k, row in enumerate(rows):
        if row.shape[1] < width:
            row = np.concatenate([row, np.full((row.shape[0], width - row.shape[1], 3), fill, np.uint8)], axis=1)
        parts.append(row)
        if gap and k < len(rows) - 1:
            parts.append(np.full((gap, width, 3), fill, np.uint8))
    return np.concatenate(parts, axis=0)


def figure_columns(panel_sizes: Sequence[tuple], gap: int = 4) -> int:
    """How many panels per row: all in one row, unless that strip is wider than
    :data:`MAX_STRIP_ASPECT`; then the column count whose figure is closest to :data:`TARGET_ASPECT`
    (a KITTI frame, 1242 x 375, gets one panel per row)."""
    n = len(panel_sizes)

    def aspect(cols: int) -> float:
        rows = [panel_sizes[i : i + cols] for i in range(0, n, cols)]
        width = max(sum(w for _, w in r) + gap * (len(r) - 1) for r in rows)
        height = sum(max(h for h, _ in r) for r in rows) + gap * (len(rows) - 1)
        return width / height

    if n <= 1 or aspect(n) <= MAX_STRIP_ASPECT:
        return max(1, n)
    return min(range(1, n + 1), key=lambda c: abs(math.log(aspect(c) / TARGET_ASPECT)))


def render_figure(frame: np.ndarray, pred, style: Optional[DrawStyle] = None) -> np.ndarray:
    """The figure of one prediction: input | overlay | every value map with its scale (depth,
    normals: panels only for the tasks the model has), a legend of the classes present underneath.
    Panels sit side by side; a wide frame's panels wrap into rows (:func:`figure_columns`)."""
    style = style or DrawStyle(font_scale=font_scale_for(frame.shape[0]))
    overlay_task, _ = drawn_tasks(list(pred.tasks.values()))
    fs = style.font_scale
    panels = [put_label(frame.copy(), "input", font_scale=fs)]
    blended, legend = blend_overlay(frame, pred, overlay_task, style)
    if overlay_task is not None:
        panels.append(put_label(blended, overlay_task.name, font_scale=fs))
    maps = [t for t in pred.tasks.values() if t.task_kind.draw_role == "map"]
    for task in sorted(maps, key=lambda t: t.task_kind.draw_priority):  # depth first, then normals
        panels.append(hstack(task.task_kind.draw_map(task, pred[task.name], style)))
    figure = grid(panels, figure_columns([p.shape[:2] for p in panels]))
    if legend is not None:
        figure = np.concatenate([figure, draw_legend(*legend, font_scale=fs, width=figure.shape[1])], axis=0)
    return figure
