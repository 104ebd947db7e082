"""Every original Multi-Task RefineNet layout converts, then runs predict and demo."""

import json

import cv2
import numpy as np
import pytest
import torch

from hydranet.cli import main
from hydranet.weights import synthetic_original_state_dict

LAYOUTS = {  # name: (segmentation channels, normals head, expected task names)
    "nyud_joint": (40, False, ["segm", "depth"]),
    "kitti_joint": (6, False, ["segm", "depth"]),
    "nyudkitti_joint": (46, False, ["segm_nyud", "segm_kitti", "depth"]),
    "nyud_three": (40, True, ["segm", "depth", "normals"]),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_original_layout_converts_predicts_and_demos(layout, tmp_path):
    classes, normals, tasks = LAYOUTS[layout]
    torch.save({"state_dict": synthetic_original_state_dict(classes, normals), "epoch": 3}, tmp_path / "orig.ckpt")
    ckpt = tmp_path / "hydranet.pt"
    assert main(["convert", str(tmp_path / "orig.ckpt"), str(ckpt)]) == 0

    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "img.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    out = tmp_path / "pred"
    assert (
        main(
            [
                "predict",
                str(tmp_path / "img.png"),
                "--weights",
                str(ckpt),
                "--out",
                str(out),
                "--json",
                str(tmp_path / "pred.json"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "pred.json").read_text())
    assert report  # one entry per image
    written = {p.name for p in out.iterdir()}
    for task in tasks:
        assert any(task in name for name in written), (task, written)

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    video = tmp_path / "demo.mp4"
    assert main(["demo", "--input", str(frames), "--weights", str(ckpt), "--out", str(video), "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
