"""The synthetic scenes: deterministic, and image, labels, depth and normals from the same surfaces."""

import numpy as np
import pytest
import torch

from hydranet.data import SYNTHETIC_CLASSES, SyntheticScenes, render_clip, render_scene, synthetic_tasks
from hydranet.errors import ConfigError
from hydranet.tasks import TaskSpec

CID = {n: i for i, n in enumerate(SYNTHETIC_CLASSES)}


def test_items_shapes_and_determinism():
    ds = SyntheticScenes(3, size=(32, 40), seed=5)
    a, b = ds[1], SyntheticScenes(3, size=(32, 40), seed=5)[1]
    assert set(a) == {"image", "id", "segm", "depth", "normals", "count", "dominant"}
    assert a["image"].shape == (3, 32, 40) and a["image"].dtype == torch.float32
    assert a["segm"].shape == (32, 40) and a["segm"].dtype == torch.int64
    assert a["depth"].shape == (1, 32, 40) and a["normals"].shape == (3, 32, 40)
    assert a["count"].shape == (1,) and a["count"].dtype == torch.float32
    assert a["dominant"].shape == () and a["dominant"].dtype == torch.int64
    for key in ("image", "segm", "depth", "normals", "count", "dominant"):
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    other_seed = SyntheticScenes(3, size=(32, 40), seed=6)[1]
    val = SyntheticScenes(3, size=(32, 40), seed=5, split="val")[1]
    assert not torch.equal(a["image"], other_seed["image"]) and not torch.equal(a["image"], val["image"])
    assert int(a["segm"].max()) < len(SYNTHETIC_CLASSES)


def test_depth_positive_and_normals_unit():
    ds = SyntheticScenes(4, size=(24, 32), seed=0)
    for i in range(len(ds)):
        item = ds[i]
        assert (item["depth"] > 0).all() and item["depth"].max() < 15
        norm = item["normals"].norm(dim=0)
        torch.testing.assert_close(norm, torch.ones_like(norm), atol=1e-5, rtol=0)
        assert 1 <= item["count"].item() <= 6


def _two_object_scene():
    """A ball 2.5 m ahead in front of a box 5 m ahead: the ball covers part of the box."""
    return {
        "room": {"width": 8.0, "depth": 10.0, "height": 3.0},
        "camera": {"position": [0.0, 1.0, 0.0], "yaw": 0.0, "pitch": 0.0, "hfov": 60.0},
        "objects": [
            {"class": "box", "center": [0.0, 1.0, 5.0], "size": [2.0, 2.0, 0.5], "yaw": 0.0, "color": [0.8, 0.2, 0.2]},
            {"class": "ball", "center": [0.1, 1.0, 2.5], "radius": 0.4, "color": [0.2, 0.2, 0.9]},
        ],
        "seed": 1,
    }


def test_nearer_object_occludes_farther_in_labels_and_depth():
    h, w = 64, 64
    out = render_scene(_two_object_scene(), (h, w))
    seg, depth = out["segmentation"], out["depth"]
    ball, box = seg == CID["ball"], seg == CID["box"]
    assert ball.sum() > 20 and box.sum() > 200
    # the pixel at the projection of the ball centre: ball in labels and ~2.1 m deep (front surface)
    f = 0.5 * w / np.tan(np.radians(30))
    u, v = int(w / 2 + f * 0.1 / 2.5), int(h / 2)
    assert seg[v, u] == CID["ball"]
    assert depth[v, u] == pytest.approx(2.5 - 0.4, abs=0.05)
    # without the ball, the same pixel is box, at the box's front face (5 - 0.25 m)
    alone = _two_object_scene()
    alone["objects"] = alone["objects"][:1]
    behind = render_scene(alone, (h, w))
    assert behind["segmentation"][v, u] == CID["box"]
    assert behind["depth"][v, u] == pytest.approx(4.75, abs=1e-3)
    # every ball pixel hides box: it was box when alone, and is nearer now
    hidden = ball & (behind["segmentation"] == CID["box"])
    assert hidden.sum() == ball.sum()
    assert (depth[hidden] < behind["depth"][hidden]).all()
    assert (depth[ball] < 2.6).all() and np.allclose(depth[box], 4.75, atol=1e-3)
    # box front face points at the camera: normal (0, 0, 1) in the camera frame
    np.testing.assert_allclose(out["normals"][box].mean(axis=0), [0, 0, 1], atol=1e-4)
    # image-level labels: both visible, box covers more pixels
    assert out["count"] == 2.0 and out["dominant"] == CID["box"]
    # the image shows it: box pixels reddish, ball pixels bluish
    rgb = out["rgb"].astype(int)
    assert (rgb[box][:, 0] > rgb[box][:, 2]).mean() > 0.9 and (rgb[ball][:, 2] > rgb[ball][:, 0]).mean() > 0.9


def test_floor_depth_matches_geometry():
    """Floor pixels lie on the plane y = 0: depth = camera height / ray's downward slope."""
    h, w = 48, 48
    scene = _two_object_scene()
    scene["objects"] = []
    out = render_scene(scene, (h, w))
    f = 0.5 * w / np.tan(np.radians(30))
    rows = np.arange(h)[:, None] + 0.5 - h / 2
    expected = np.broadcast_to(1.0 * f / np.maximum(rows, 1e-9), (h, w))
    floor = out["segmentation"] == CID["floor"]
    assert floor[-1].all() and not floor[0].any()
    np.testing.assert_allclose(out["depth"][floor], expected[floor], rtol=1e-4)
    np.testing.assert_allclose(out["normals"][floor], np.broadcast_to([0, 1, 0], (floor.sum(), 3)), atol=1e-5)
    assert out["count"] == 0 and out["dominant"] is None


def test_dominant_absent_when_no_object_visible_and_label_dropout():
    ds = SyntheticScenes(6, size=(16, 16), label_dropout={"depth": 1.0, "segm": 0.5})
    items = [ds[i] for i in range(6)]
    assert all("depth" not in it for it in items)
    assert 0 < sum("segm" in it for it in items) < 6  # dropped per item, deterministically
    assert [("segm" in it) for it in items] == [("segm" in ds[i]) for i in range(6)]


def test_custom_tasks_and_bad_config():
    tasks = [TaskSpec("labels", "segmentation", classes=8), TaskSpec("n", "regression", outputs=1)]
    ds = SyntheticScenes(2, size=(16, 16), tasks=tasks, fields={"n": "count"})
    assert set(ds[0]) == {"image", "id", "labels", "n"}
    with pytest.raises(ConfigError, match=r"no field 'maker' \(the field a task reads: tasks\[\]\.name, by default\)"):
        SyntheticScenes(2, tasks=[TaskSpec("maker", "classification", classes=8)])
    with pytest.raises(ConfigError, match=r"no field 'cnt' \(the field a task reads: its data set's fields map it"):
        SyntheticScenes(2, tasks=tasks, fields={"n": "cnt"})
    with pytest.raises(ConfigError, match="classes"):
        SyntheticScenes(2, tasks=[TaskSpec("segm", "segmentation", classes=3)])
    with pytest.raises(ConfigError, match="split"):
        SyntheticScenes(2, split="dev")
    assert [t.name for t in synthetic_tasks()] == ["segm", "depth", "normals", "count", "dominant"]


def test_render_clip_moves_smoothly():
    frames = render_clip(4, size=(24, 32), seed=3)
    assert len(frames) == 4
    rgb, depth, labels = frames[0]
    assert rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8
    assert depth.shape == (24, 32) and depth.dtype == np.float32 and (depth > 0).all()
    assert labels.shape == (24, 32)
    steps = [np.abs(frames[i + 1][1] - frames[i][1]).mean() for i in range(3)]
    assert all(0 < s < 1.0 for s in steps)  # it moves, but not by jumps
    again = render_clip(4, size=(24, 32), seed=3)
    np.testing.assert_array_equal(again[2][0], frames[2][0])
