"""Temporal smoothing (`--smooth ALPHA`): exponential averaging of depth and class probabilities."""

import json

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.errors import ConfigError
from hydranet.inference import Predictor
from hydranet.inference.smoothing import TemporalSmoother
from hydranet.tasks import TaskSpec

TASKS = [
    TaskSpec(name="segm", kind="segmentation", classes=2),
    TaskSpec(name="depth", kind="depth"),
    TaskSpec(name="kind", kind="classification", classes=2),
]


def _out(depth, logits):
    return {
        "depth": torch.tensor([[[[depth]]]], dtype=torch.float32),
        "segm": torch.tensor([[[[logits[0]]], [[logits[1]]]]], dtype=torch.float32),
        "kind": torch.tensor([logits], dtype=torch.float32),
    }


def test_exponential_average_by_hand():
    s = TemporalSmoother(TASKS, alpha=0.75)
    first = s(_out(2.0, [0.0, 0.0]))  # the first frame passes unchanged
    assert first["depth"].item() == 2.0
    assert torch.allclose(first["segm"].softmax(1).flatten(), torch.tensor([0.5, 0.5]))
    second = s(_out(-6.0, [0.0, np.log(3.0)]))  # depth |-6| = 6; probabilities (0.25, 0.75)
    assert second["depth"].item() == pytest.approx(0.75 * 2.0 + 0.25 * 6.0)  # 3.0
    p = second["segm"].softmax(1).flatten()
    assert torch.allclose(p, torch.tensor([0.75 * 0.5 + 0.25 * 0.25, 0.75 * 0.5 + 0.25 * 0.75]))  # .4375 .5625
    assert torch.allclose(second["kind"].softmax(1).flatten(), p)  # image-level probabilities alike


def test_batch_is_taken_in_time_order_and_size_change_restarts():
    s = TemporalSmoother(TASKS[1:2], alpha=0.5)
    out = s({"depth": torch.tensor([1.0, 3.0, 5.0]).view(3, 1, 1, 1)})["depth"].flatten().tolist()
    assert out == [1.0, 2.0, 3.5]
    bigger = s({"depth": torch.full((1, 1, 2, 2), 9.0)})["depth"]
    assert torch.equal(bigger, torch.full((1, 1, 2, 2), 9.0))  # another size: a new clip
    s.reset()
    assert s({"depth": torch.full((1, 1, 2, 2), 1.0)})["depth"].max().item() == 1.0


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5])
def test_alpha_out_of_range(alpha):
    with pytest.raises(ConfigError, match=r"smoothing alpha must be in \[0, 1\)"):
        TemporalSmoother(TASKS, alpha)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]
    return hydranet.build_model(tiny_config(tasks=tasks))


def test_predictor_smooths_consecutive_frames(model, one_thread):
    rng = np.random.default_rng(0)
    a, b = (rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2))
    plain = Predictor(model, fast=False)
    smooth = Predictor(model, fast=False, smooth=0.5)
    smooth.warmup(b, iterations=2)  # warm-up frames do not enter the average
    pa, pb = plain.predict(a)["depth"], plain.predict(b)["depth"]
    sa, sb = smooth.predict(a)["depth"], smooth.predict(b)["depth"]
    np.testing.assert_allclose(sa, pa, rtol=1e-5)
    assert not np.allclose(sb, pb, rtol=1e-3)
    # a constant stream is a fixed point
    smooth.reset_smoothing()
    for _ in range(3):
        same = smooth.predict(a)
    np.testing.assert_allclose(same["depth"], pa, rtol=1e-5)
    assert (same["segm"] == plain.predict(a)["segm"]).all()
    # a batch equals the frames one by one
    smooth.reset_smoothing()
    batch = smooth.predict_batch([a, b])
    np.testing.assert_allclose(batch[1]["depth"], sb, rtol=1e-5)


def test_demo_smooth_flag(model, tmp_path, one_thread):
    ckpt = tmp_path / "m.pt"
    hydranet.save_model(model, ckpt)
    out = tmp_path / "s.mp4"
    assert (
        main(
            [
                "demo",
                "--weights",
                str(ckpt),
                "--out",
                str(out),
                "--max-frames",
                "3",
                "--clip-size",
                "64x48",
                "--smooth",
                "0.6",
                "--no-progress",
                "--json",
                str(tmp_path / "s.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "s.json").read_text())["smooth"] == 0.6
    assert main(["demo", "--weights", str(ckpt), "--out", str(out), "--smooth", "1"]) == 2
