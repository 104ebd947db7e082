"""Named label sets: the class names and class colours of the data sets Hydranet knows.

Each fact is here once: the data sets (:mod:`hydranet.data.nyud`, :mod:`hydranet.data.synthetic`),
the drawing (:mod:`hydranet.visualize`) and converted checkpoints read them from this module.
A segmentation task's colours are chosen by name (``options.palette``, a key of
:data:`NAMED_PALETTES`, carried in the config a checkpoint stores), never from a class count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError
from .vocabulary import PALETTE_NAMES

__all__ = [
    "voc_colormap",
    "NYUD40_NAMES",
    "NYUD40_PALETTE",
    "CITYSCAPES19_NAMES",
    "CITYSCAPES19_PALETTE",
    "KITTI6_PALETTE",
    "SYNTHETIC8_NAMES",
    "SYNTHETIC8_PALETTE",
    "NAMED_PALETTES",
    "KNOWN_NAMES",
]

# The shipped NYUD-40 class names (one a line, class-id order), converted from classMapping40.mat.
NYUD_CLASS_NAMES = Path(__file__).parent / "data" / "nyud" / "class_names40.txt"


def _read_names(path: Path, count: int) -> tuple:
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError as exc:
        raise DataError(f"{path}: cannot read the NYUD-40 class names: {exc}") from exc
    if len(names) != count:
        raise DataError(f"{path}: expected {count} class names, found {len(names)}")
    return tuple(names)


def voc_colormap(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map: colour ``i`` spreads the bits of ``i`` over R, G and B.

    Bit ``3k`` of the id goes to bit ``7 - k`` of red, bit ``3k + 1`` to green and ``3k + 2``
    to blue, so ids 0, 1, 2, 3 are black, (128, 0, 0), (0, 128, 0), (128, 128, 0).
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for k in range(8):
            r |= ((c >> 0) & 1) << (7 - k)
            g |= ((c >> 1) & 1) << (7 - k)
            b |= ((c >> 2) & 1) << (7 - k)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


NYUD40_NAMES = _read_names(NYUD_CLASS_NAMES, 40)
NYUD40_PALETTE = voc_colormap(41)[1:]

CITYSCAPES19_NAMES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
CITYSCAPES19_PALETTE = np.array(
    [
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ],
    dtype=np.uint8,
)

# The authors' cmap_kitti.npy, rows 0..5 (its row 6, black, is left for ignore).
KITTI6_PALETTE = np.array(
    [(128, 128, 128), (128, 0, 0), (128, 64, 128), (0, 0, 192), (128, 128, 0), (64, 0, 128)], dtype=np.uint8
)

SYNTHETIC8_NAMES = ("floor", "wall", "ceiling", "box", "cabinet", "ball", "cylinder", "table")
SYNTHETIC8_PALETTE = np.array(
    [
        (176, 122, 66),  # floor: brown
        (96, 140, 200),  # wall: steel blue
        (222, 222, 130),  # ceiling: pale yellow
        (230, 45, 45),  # box: red
        (160, 80, 215),  # cabinet: purple
        (255, 160, 20),  # ball: orange
        (40, 190, 80),  # cylinder: green
        (0, 210, 210),  # table: cyan
    ],
    dtype=np.uint8,
)


#: Palettes by name (row i = class i), in the order of ``hydranet.vocabulary.PALETTE_NAMES``.
NAMED_PALETTES = dict(zip(PALETTE_NAMES, (NYUD40_PALETTE, KITTI6_PALETTE, CITYSCAPES19_PALETTE, SYNTHETIC8_PALETTE)))

#: Class-name lists that identify a palette (a task with exactly these names gets its colours).
KNOWN_NAMES = {NYUD40_NAMES: "nyud", CITYSCAPES19_NAMES: "cityscapes", SYNTHETIC8_NAMES: "synthetic"}
