"""KITTI-style data: sparse uint16 depth PNGs (metres x 256, 0 = no measurement), the Garg and
Eigen evaluation crops, and the 80 m cap.

The crops are fractions of the image height (rows) and width (columns), as in the evaluation
code of Garg et al. (ECCV 2016) and Eigen et al. (NIPS 2014) used by most depth papers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Union

import numpy as np

from ..tasks import TaskSpec
from ..vocabulary import KITTI_DEPTH_SCALE
from .io import read_depth
from .listfile import ListDataset

KITTI_MAX_DEPTH = 80.0


def read_kitti_depth(path: Union[str, Path]) -> np.ndarray:
    """A KITTI depth PNG (uint16, metres x 256) as float32 metres, 0 = no measurement."""
    return read_depth(path, KITTI_DEPTH_SCALE)


class KittiDataset(ListDataset):
    """A :class:`ListDataset` with KITTI defaults: depth PNGs are metres x 256.

    A typical list has a header such as ``# image depth`` or ``# image depth segmentation``
    (without one, the columns are ``image segmentation depth normals``).
    """

    def __init__(
        self,
        list_file: Union[str, Path],
        tasks: Sequence[TaskSpec],
        root=None,
        depth_scale: float = KITTI_DEPTH_SCALE,
        fields: Optional[Mapping[str, str]] = None,
        transform: Optional[Callable] = None,
        skip_bad: bool = False,
        palette=None,
        columns: Optional[Sequence[str]] = None,
    ):
        super().__init__(
            list_file,
            tasks,
            root=root,
            depth_scale=depth_scale,
            fields=fields,
            transform=transform,
            skip_bad=skip_bad,
            palette=palette,
            columns=columns,
        )
