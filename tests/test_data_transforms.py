"""Joint transforms: labels move with the image, stay valid, and normals turn with flips/rotations."""

import pickle

import numpy as np
import pytest
import torch

from hydranet.data import IMAGENET_MEAN, build_transforms, denormalize_image, normalize_image
from hydranet.errors import ConfigError
from hydranet.tasks import TaskSpec

TASKS = [TaskSpec("segm", "segmentation", classes=5), TaskSpec("depth", "depth"), TaskSpec("normals", "normals")]


def _sample(h=32, w=40, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    segm = rng.integers(0, 5, (h, w)).astype(np.int64)
    segm[0, :] = 255
    depth = rng.uniform(0.5, 9.0, (h, w)).astype(np.float32)
    depth[:, :3] = 0.0  # no measurement
    n = rng.normal(size=(h, w, 3)).astype(np.float32)
    n /= np.linalg.norm(n, axis=2, keepdims=True)
    return {"image": image, "id": "s0", "segm": segm, "depth": depth, "normals": n}


def test_normalize_roundtrip_and_constants():
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    x = normalize_image(rgb)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    expected = (rgb[2, 3, 0] / 255.0 - IMAGENET_MEAN[0]) / 0.229
    assert x[0, 2, 3].item() == pytest.approx(expected, abs=1e-5)
    np.testing.assert_array_equal(denormalize_image(x), rgb)
    assert denormalize_image(x[None]).shape == (1, 5, 7, 3)


def test_hflip_moves_everything_together():
    s = _sample()
    out = build_transforms({"hflip": 1.0}, train=True)(s, TASKS)
    np.testing.assert_array_equal(denormalize_image(out["image"]), s["image"][:, ::-1])
    np.testing.assert_array_equal(out["segm"].numpy(), s["segm"][:, ::-1])
    np.testing.assert_array_equal(out["depth"][0].numpy(), s["depth"][:, ::-1])
    n = out["normals"].numpy().transpose(1, 2, 0)
    flipped = s["normals"][:, ::-1]
    np.testing.assert_allclose(n[..., 0], -flipped[..., 0], atol=1e-6)
    np.testing.assert_allclose(n[..., 1:], flipped[..., 1:], atol=1e-6)


def test_no_flip_is_identity():
    s = _sample()
    out = build_transforms({"hflip": 0.0}, train=True)(s, TASKS)
    np.testing.assert_array_equal(out["segm"].numpy(), s["segm"])
    np.testing.assert_allclose(out["normals"].numpy().transpose(1, 2, 0), s["normals"], atol=1e-6)


def test_scale_crop_pad_keeps_labels_exact_and_marks_padding_invalid():
    s = _sample()
    s["segm"][0, :] = 1  # no ignore pixels in the source: every 255 below is padding
    tf = build_transforms({"size": [32, 40], "scale": [0.5, 0.5], "hflip": 0.0, "seed": 3}, train=True)
    out = tf(s, TASKS)
    assert out["image"].shape == (3, 32, 40) and out["segm"].shape == (32, 40)
    assert out["depth"].shape == (1, 32, 40) and out["normals"].shape == (3, 32, 40)
    segm, depth = out["segm"].numpy(), out["depth"][0].numpy()
    # nearest interpolation: only values that exist in the source (never blends, never averages depth)
    assert set(np.unique(segm)) <= set(np.unique(s["segm"])) | {255}
    assert set(np.unique(depth)) <= set(np.unique(s["depth"]))
    # half-size content padded to full size: a quarter of the area is data, the rest invalid
    pad = segm == 255
    assert 0.6 < pad.mean() < 0.85
    assert (depth[pad] == 0).all()
    norms = np.linalg.norm(out["normals"].numpy(), axis=0)
    assert (norms[pad] == 0).all()
    assert np.allclose(norms[~pad & (depth > 0)], 1.0, atol=1e-5)
    # the padded image is the mean colour, i.e. ~0 after normalisation
    assert out["image"][:, pad].abs().max() < 0.03


def test_random_scale_crop_gives_fixed_size():
    s = _sample()
    tf = build_transforms(
        {"size": [24, 24], "scale": [0.5, 2.0], "rotate": 10, "color_jitter": 0.3, "seed": 0}, train=True
    )
    for _ in range(4):
        out = tf(s, TASKS)
        assert out["image"].shape == (3, 24, 24) and out["segm"].shape == (24, 24)
        assert out["segm"].dtype == torch.int64 and out["depth"].dtype == torch.float32


def test_rotation_turns_normals_like_the_image():
    """Normals set to the image's intensity gradient stay equal to it after rotation and flip."""
    h = w = 65
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a, b = 1.0, 0.5  # intensity grows along +x and down (+y in pixels)
    img = np.clip(128 + (a * (xx - 32) + b * (yy - 32)) * 2.5, 0, 255).astype(np.uint8)
    img = np.repeat(img[..., None], 3, axis=2)
    nv = np.array([a, -b, 0.3]) / np.linalg.norm([a, -b, 0.3])  # y up
    normals = np.broadcast_to(nv, (h, w, 3)).astype(np.float32).copy()
    tasks = [TaskSpec("normals", "normals")]
    for seed in range(3):
        for hflip in (0.0, 1.0):
            tf = build_transforms({"rotate": 40, "hflip": hflip, "seed": seed}, train=True)
            out = tf({"image": img, "id": "g", "normals": normals}, tasks)
            im = denormalize_image(out["image"])[..., 0].astype(np.float32)
            gx = (im[32, 35] - im[32, 29]) / 6
            gy = (im[35, 32] - im[29, 32]) / 6
            grad = np.array([gx, -gy]) / np.hypot(gx, gy)
            n = out["normals"][:, 32, 32].numpy()
            assert np.linalg.norm(n) == pytest.approx(1.0, abs=1e-5)
            assert n[2] == pytest.approx(nv[2], abs=1e-5)  # in-plane rotation keeps z
            assert np.dot(n[:2] / np.linalg.norm(n[:2]), grad) > 0.99


def test_eval_pipeline_resizes_or_passes_through():
    s = _sample()
    out = build_transforms({"size": [16, 20]}, train=False)(s, TASKS)
    assert out["image"].shape == (3, 16, 20) and out["segm"].shape == (16, 20)
    out = build_transforms(None, train=False)(s, TASKS)
    assert out["image"].shape == (3, 32, 40)
    np.testing.assert_array_equal(out["segm"].numpy(), s["segm"])


def test_missing_labels_stay_missing_and_transform_pickles():
    s = _sample()
    del s["depth"]
    tf = build_transforms({"size": [16, 16]}, train=True)
    out = pickle.loads(pickle.dumps(tf))(s, TASKS)
    assert "depth" not in out and "segm" in out


def test_bad_transform_config():
    with pytest.raises(ConfigError, match="transforms.flip: unknown field; did you mean 'hflip'"):
        build_transforms({"flip": 0.5}, train=True)
    with pytest.raises(ConfigError, match="scale"):
        build_transforms({"scale": [2.0, 1.0]}, train=True)
