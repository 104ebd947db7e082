"""The built-in task kinds: plug-ins above the library, one file each.

Each module is the whole kind: its options model, its label files, its metric accumulator,
its drawing and the files it writes, and one ``register_kind`` call. The task registry
(:mod:`hydranet.tasks.registry`) imports this package on its first use; a kind of one's own
is one more module of the same shape (see ``tests/test_task_kinds.py``).
"""

from ..tasks import DrawStyle

# Registration order is the order of KINDS (pseudo-label columns, the reference tables).
from . import (
    classification,
    depth,
    normals,
    regression,
    segmentation,  # noqa: I001  (segmentation first)
)

__all__ = ["segmentation", "classification", "depth", "normals", "regression", "draw_style"]


def draw_style(
    config=None,
    font_scale: float = 0.45,
    alpha: float = 0.5,
    fixed_range: bool = False,
    max_depth=None,
    cmap: str = "magma",
    palette=None,
    depth_format: str = "png",
):
    """A :class:`~hydranet.tasks.DrawStyle` from the drawing flags of the commands (``--max-depth``,
    ``--cmap``, ``--palette``, ``--depth-format``), each handed to the built-in kind it belongs to."""
    return DrawStyle(
        config=dict(config or {}),
        alpha=alpha,
        font_scale=font_scale,
        fixed_range=fixed_range,
        kinds={
            depth.DEPTH.name: depth.DepthStyle(max_depth=max_depth, cmap=cmap, raw_format=depth_format),
            segmentation.SEGMENTATION.name: segmentation.SegmentationStyle(palette=palette),
        },
    )
