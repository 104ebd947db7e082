"""KITTI-style data: sparse uint16 depth PNGs (metres x 256, 0 = no measurement), the Garg and
Eigen evaluation crops, and the 80 m cap.

The crops are fractions of the image height (rows) and width (columns), as in the evaluation
code of Garg et al. (ECCV 2016) and Eigen et al. (NIPS 2014) used by most depth papers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError
from ..tasks import TaskSpec
from .io import read_depth
from .listfile import ListDataset

KITTI_DEPTH_SCALE = 256.0
KITTI_MAX_DEPTH = 80.0
KITTI_MIN_DEPTH = 1e-3
#: (row start, row end, column start, column end) as fractions of height and width
KITTI_CROPS = {
    "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229),
    "eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
}


def read_kitti_depth(path: Union[str, Path]) -> np.ndarray:
    """A KITTI depth PNG (uint16, metres x 256) as float32 metres, 0 = no measurement."""
    return read_depth(path, KITTI_DEPTH_SCALE)


def kitti_eval_mask(h: int, w: int, crop: Optional[str] = "garg") -> np.ndarray:
    """Boolean H x W mask of the evaluation crop (``"garg"``, ``"eigen"``, or None = everything)."""
    mask = np.zeros((h, w), dtype=bool)
    if crop is None:
        mask[:] = True
        return mask
    if crop not in KITTI_CROPS:
        raise ConfigError(f"unknown KITTI crop {crop!r}; valid: {', '.join(KITTI_CROPS)} or None")
    r0, r1, c0, c1 = KITTI_CROPS[crop]
    rows = (int(r0 * h), int(r1 * h))
    cols = (int(c0 * w), int(c1 * w))
    mask[rows[0]:rows[1], cols[0]:cols[1]] = True
    return mask


def kitti_valid_mask(depth: np.ndarray, crop: Optional[str] = "garg", min_depth: float = KITTI_MIN_DEPTH,
                     max_depth: float = KITTI_MAX_DEPTH) -> np.ndarray:
    """Pixels that count in KITTI evaluation: measured, within (min_depth, max_depth], inside the crop."""
    depth = np.asarray(depth)
    h, w = depth.shape[-2:]
    return (depth > min_depth) & (depth <= max_depth) & kitti_eval_mask(h, w, crop)


class KittiDataset(ListDataset):
    """A :class:`ListDataset` with KITTI defaults: depth PNGs are metres x 256.

    A typical list has a header such as ``# image depth`` or ``# image depth segmentation``
    (without one, the columns are ``image segmentation depth normals``).
    """

    def __init__(self, list_file: Union[str, Path], tasks: Sequence[TaskSpec], root=None,
                 depth_scale: float = KITTI_DEPTH_SCALE, fields: Optional[Mapping[str, str]] = None,
                 transform: Optional[Callable] = None, skip_bad: bool = False, palette=None,
                 columns: Optional[Sequence[str]] = None):
        super().__init__(list_file, tasks, root=root, depth_scale=depth_scale, fields=fields,
                         transform=transform, skip_bad=skip_bad, palette=palette, columns=columns)
