"""Palettes travel with the checkpoint; converted originals carry the authors' colours; --palette overrides."""

import numpy as np
import pytest
import torch
from support import tiny_config

import hydranet
from hydranet import visualize as vis
from hydranet.cli import main
from hydranet.data.io import read_image
from hydranet.errors import ConfigError
from hydranet.tasks import TaskSpec
from hydranet.weights import convert_state_dict, synthetic_original_state_dict

# The authors' cmap_kitti.npy rows 0..5 (drawn as cmap[argmax]) and cmap_nyud.npy rows 1, 2, 40
# (drawn as cmap[argmax + 1]: the PASCAL VOC colour map).
AUTHORS_KITTI = [[128, 128, 128], [128, 0, 0], [128, 64, 128], [0, 0, 192], [128, 128, 0], [64, 0, 128]]


def test_converted_originals_carry_the_authors_palettes():
    config, _, _ = convert_state_dict(synthetic_original_state_dict(segm_classes=46))
    nyud = config["tasks"][0]["options"]["palette"]
    kitti = config["tasks"][1]["options"]["palette"]
    assert kitti == AUTHORS_KITTI
    assert len(nyud) == 40 and nyud[0] == [128, 0, 0] and nyud[1] == [0, 128, 0] and nyud[39] == [64, 0, 64]
    assert "palette" not in config["tasks"][2].get("options", {})


def test_palette_in_the_task_options_wins_and_survives_a_checkpoint(tmp_path):
    colours = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    tasks = [
        {"name": "segm", "kind": "segmentation", "classes": 3, "options": {"palette": colours}},
        {"name": "depth", "kind": "depth"},
    ]
    torch.manual_seed(0)
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), tmp_path / "m.pt")
    model = hydranet.load_model(tmp_path / "m.pt")
    assert vis.palette_for(model.tasks[0]).tolist() == colours
    bad = TaskSpec(name="s", kind="segmentation", classes=4, options={"palette": colours})
    with pytest.raises(ConfigError, match="options.palette of task 's': 3 colours for 4 classes"):
        vis.palette_for(bad)


def test_resolve_palette_names_and_files(tmp_path):
    task = TaskSpec(name="segm", kind="segmentation", classes=2)
    assert vis.resolve_palette("KITTI", task).tolist() == AUTHORS_KITTI[:2]
    assert vis.resolve_palette(None, task).tolist() == vis.palette_for(task).tolist()
    text = tmp_path / "p.txt"
    text.write_text("# road and sky\n1, 2, 3\n4 5 6   # sky\n7 8 9\n")
    assert vis.resolve_palette(str(text), task).tolist() == [[1, 2, 3], [4, 5, 6]]
    npy = tmp_path / "p.npy"
    np.save(npy, np.array([[0, 0, 0], [255, 255, 255]]))
    assert vis.resolve_palette(npy, task).tolist() == [[0, 0, 0], [255, 255, 255]]
    with pytest.raises(ConfigError, match="neither a palette name"):
        vis.resolve_palette("rainbow", task)
    (tmp_path / "short.txt").write_text("1 2 3\n")
    with pytest.raises(ConfigError, match="short.txt'?: 1 colours for 2 classes"):
        vis.resolve_palette(str(tmp_path / "short.txt"), task)
    (tmp_path / "big.txt").write_text("1 2 300\n4 5 6\n")
    with pytest.raises(ConfigError, match="0..255"):
        vis.resolve_palette(str(tmp_path / "big.txt"), task)


def test_predict_palette_flag(tmp_path, one_thread):
    tasks = [{"name": "segm", "kind": "segmentation", "classes": 3}, {"name": "depth", "kind": "depth"}]
    torch.manual_seed(1)
    hydranet.save_model(hydranet.build_model(tiny_config(tasks=tasks)), tmp_path / "m.pt")
    image = tmp_path / "img.png"
    rng = np.random.default_rng(0)
    hydranet.data.io.write_png(image, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    (tmp_path / "pal.txt").write_text("255 0 0\n0 255 0\n0 0 255\n")
    assert (
        main(
            [
                "predict",
                str(image),
                "--weights",
                str(tmp_path / "m.pt"),
                "--out",
                str(tmp_path / "o"),
                "--palette",
                str(tmp_path / "pal.txt"),
            ]
        )
        == 0
    )
    import cv2

    ids = cv2.imread(str(tmp_path / "o" / "img_segm_ids.png"), cv2.IMREAD_UNCHANGED)
    colours = read_image(tmp_path / "o" / "img_segm.png")
    expected = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)[ids]
    assert (colours == expected).all()
    assert (
        main(
            [
                "predict",
                str(image),
                "--weights",
                str(tmp_path / "m.pt"),
                "--out",
                str(tmp_path / "o"),
                "--palette",
                "nope",
            ]
        )
        == 2
    )
