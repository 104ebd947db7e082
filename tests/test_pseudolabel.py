import cv2
import numpy as np
import torch
from support import tiny_config

import hydranet
from hydranet.cli import main
from hydranet.data import ListDataset
from hydranet.data.transforms import normalize_image
from hydranet.tasks import parse_tasks

TASKS = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]


def _dataset(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), rng.integers(0, 255, (40, 56, 3), dtype=np.uint8))
    real_seg = rng.integers(0, 3, (40, 56)).astype(np.uint8)
    real_depth = rng.integers(1000, 20000, (40, 56)).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "seg0.png"), real_seg)
    cv2.imwrite(str(tmp_path / "depth0.png"), real_depth)
    cv2.imwrite(str(tmp_path / "seg1.png"), real_seg)
    (tmp_path / "train.txt").write_text(
        "# image segmentation depth\nimg0.png seg0.png depth0.png\nimg1.png seg1.png -\nimg2.png - -\n"
    )
    return real_seg, real_depth


def test_pseudolabel_fills_only_missing_labels(tmp_path):
    real_seg, real_depth = _dataset(tmp_path)
    torch.manual_seed(0)
    teacher = hydranet.build_model(tiny_config(tasks=TASKS)).eval()
    hydranet.save_model(teacher, tmp_path / "teacher.pt")
    out = tmp_path / "pseudo"
    assert (
        main(
            [
                "pseudolabel",
                "--teacher",
                str(tmp_path / "teacher.pt"),
                "--list",
                str(tmp_path / "train.txt"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    lines = (out / "train.txt").read_text().splitlines()
    assert lines[0] == "# image segmentation depth normals"
    rows = [l.split() for l in lines[1:]]
    # real labels are kept as they were, by path and content
    assert rows[0][1] == str((tmp_path / "seg0.png").resolve()) and rows[0][2] == str(
        (tmp_path / "depth0.png").resolve()
    )
    assert rows[1][1] == str((tmp_path / "seg1.png").resolve())
    assert np.array_equal(cv2.imread(str(tmp_path / "depth0.png"), cv2.IMREAD_UNCHANGED), real_depth)
    # missing ones are the teacher's predictions
    rgb = cv2.cvtColor(cv2.imread(str(tmp_path / "img2.png")), cv2.COLOR_BGR2RGB)
    with torch.no_grad():
        pred = teacher(normalize_image(rgb)[None])
    seg = cv2.imread(rows[2][1], cv2.IMREAD_UNCHANGED)
    assert np.array_equal(seg, pred["segm"][0].argmax(0).numpy())
    depth = cv2.imread(rows[2][2], cv2.IMREAD_UNCHANGED)
    expected = np.clip(np.round(pred["depth"][0, 0].abs().numpy() * 5000), 0, 65535)
    assert np.abs(depth.astype(np.int64) - expected).max() <= 1
    assert rows[1][2].endswith(".png") and "pseudo" in rows[1][2]
    # the completed list is a complete dataset
    ds = ListDataset(out / "train.txt", parse_tasks(TASKS))
    assert all("segm" in ds[i] and "depth" in ds[i] for i in range(3))


def test_pseudolabel_confidence_leaves_uncertain_pixels_unlabelled(tmp_path):
    _dataset(tmp_path)
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=TASKS)), tmp_path / "teacher.pt")
    out = tmp_path / "pseudo"
    assert (
        main(
            [
                "pseudolabel",
                "--teacher",
                str(tmp_path / "teacher.pt"),
                "--list",
                str(tmp_path / "train.txt"),
                "--out",
                str(out),
                "--confidence",
                "1.0",
            ]
        )
        == 0
    )
    seg_path = (out / "train.txt").read_text().splitlines()[3].split()[1]
    assert (cv2.imread(seg_path, cv2.IMREAD_UNCHANGED) == 255).all()
    # refusing to overwrite the source list
    assert (
        main(
            [
                "pseudolabel",
                "--teacher",
                str(tmp_path / "teacher.pt"),
                "--list",
                str(tmp_path / "train.txt"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
