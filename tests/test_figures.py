"""predict's figure: every map the model has (depth and normals), and wide frames in rows."""

import numpy as np
import pytest

from hydranet import visualize as vis
from hydranet.inference import Prediction
from hydranet.tasks.spec import parse_tasks

TASKS = parse_tasks(
    [
        {"name": "segm", "kind": "segmentation", "classes": 6},
        {"name": "depth", "kind": "depth", "options": {"max_depth": 80.0}},
        {"name": "normals", "kind": "normals"},
    ]
)


def _prediction(h, w, tasks=TASKS):
    """A hand-made prediction: left half class 1, right half class 4; depth 10 m; normals facing the camera."""
    segm = np.ones((h, w), np.int64)
    segm[:, w // 2 :] = 4
    normals = np.zeros((h, w, 3), np.float32)
    normals[..., 2] = 1.0
    outputs = {"segm": segm, "depth": np.full((h, w), 10.0, np.float32), "normals": normals}
    return Prediction({t.name: outputs[t.name] for t in tasks}, {t.name: t for t in tasks}, (h, w))


def _frame(h, w):
    return np.full((h, w, 3), 90, np.uint8)


def test_normals_are_in_the_figure_beside_depth():
    figure = vis.render_figure(_frame(120, 160), _prediction(120, 160))
    normals_rgb = vis.normals_to_rgb(np.array([[[0.0, 0.0, 1.0]]]))[0, 0]  # (128, 128, 255)
    # the normals panel: every pixel of it but its label
    assert np.all(figure == normals_rgb, axis=-1).sum() > 0.8 * 120 * 160
    without = vis.render_figure(_frame(120, 160), _prediction(120, 160, TASKS[:2]))
    assert not np.all(without == normals_rgb, axis=-1).any()  # no normals panel when the model has none
    # input | overlay | depth + scale bar, in one row (aspect below MAX_STRIP_ASPECT)
    assert without.shape[1] > 3 * 160 and without.shape[0] < 2 * 120


@pytest.mark.parametrize("h, w", [(375, 1242), (352, 1216)])
def test_a_wide_frame_is_laid_out_in_rows(h, w):
    figure = vis.render_figure(_frame(h, w), _prediction(h, w))
    fh, fw = figure.shape[:2]
    assert fw / fh <= vis.MAX_STRIP_ASPECT  # not a 3762 x 401 strip
    assert fh >= 3 * h  # input, overlay, depth, normals: one panel per row at this shape
    assert fw < 1.3 * w  # each row is one frame wide (the depth row adds its scale bar)
    assert vis.figure_columns([(h, w)] * 4) == 1


def test_figure_columns_by_hand():
    assert vis.figure_columns([(480, 640)] * 3) == 3  # 1928 x 480: aspect 4.0, one row
    assert vis.figure_columns([(480, 640)] * 4) == 2  # a row would be 5.4 wide; 2 x 2 is 1.34
    assert vis.figure_columns([(375, 1242)] * 2) == 1  # 2488 x 375 (6.6) -> 1242 x 754 (1.65)
    grid = vis.grid([np.zeros((2, 3, 3), np.uint8)] * 3, columns=2, gap=1)
    assert grid.shape == (5, 7, 3)  # two rows of 2 + 1 panels, padded to the widest
