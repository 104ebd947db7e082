"""List-file and KITTI datasets: values as written, missing labels absent, clear errors on bad files."""

import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from hydranet.data import KITTI_MAX_DEPTH, KittiDataset, ListDataset, collate, read_kitti_depth
from hydranet.errors import DataError
from hydranet.kinds.depth import depth_crop_mask
from hydranet.tasks import TaskSpec

H, W = 6, 8
TASKS = [TaskSpec("segm", "segmentation", classes=5), TaskSpec("depth", "depth"), TaskSpec("normals", "normals")]


def _rgb(seed):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _write_rgb(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


@pytest.fixture
def folder(tmp_path):
    """Three samples: full labels, depth only, segmentation only (via '-' and a short line)."""
    data = {}
    for i in range(3):
        rgb = _rgb(i)
        segm = (np.arange(H * W).reshape(H, W) % 5).astype(np.uint8)
        segm[0, 0] = 255
        depth_raw = np.full((H, W), 5000 * (i + 1), np.uint16)
        depth_raw[1, 1] = 0
        n = np.zeros((H, W, 3), np.float32)
        n[..., 2] = 1.0
        n[:, : W // 2] = [1.0, 0.0, 0.0]
        _write_rgb(tmp_path / "rgb" / f"{i}.png", rgb)
        _write(tmp_path / "seg" / f"{i}.png", segm)
        _write(tmp_path / "depth" / f"{i}.png", depth_raw)
        _write_rgb(tmp_path / "nrm" / f"{i}.png", np.rint((n + 1) / 2 * 255).astype(np.uint8))
        data[i] = (rgb, segm, depth_raw)
    lines = [
        "# image segmentation depth normals",
        "rgb/0.png seg/0.png depth/0.png nrm/0.png",
        "rgb/1.png - depth/1.png",
        "rgb/2.png seg/2.png",
    ]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, data


def test_values_as_written(folder):
    root, data = folder
    ds = ListDataset(root / "train.txt", TASKS)
    assert len(ds) == 3
    item = ds[0]
    rgb, segm, depth_raw = data[0]
    assert item["id"] == "rgb/0"
    assert item["image"].shape == (3, H, W) and item["image"].dtype == torch.float32
    from hydranet.data import denormalize_image

    np.testing.assert_array_equal(denormalize_image(item["image"]), rgb)
    assert item["segm"].dtype == torch.int64 and item["segm"].shape == (H, W)
    np.testing.assert_array_equal(item["segm"].numpy(), segm)
    assert item["depth"].shape == (1, H, W) and item["depth"].dtype == torch.float32
    assert item["depth"][0, 2, 2].item() == pytest.approx(1.0)  # 5000 / 5000 metres
    assert item["depth"][0, 1, 1].item() == 0.0
    n = item["normals"]
    assert n.shape == (3, H, W)
    np.testing.assert_allclose(n[:, 0, 0].numpy(), [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(n[:, 0, W - 1].numpy(), [0, 0, 1], atol=0.01)
    assert ds[1]["depth"][0, 0, 0].item() == pytest.approx(2.0)


def test_missing_labels_are_absent_not_zero(folder):
    root, _ = folder
    ds = ListDataset(root / "train.txt", TASKS)
    one, two = ds[1], ds[2]
    assert "segm" not in one and "normals" not in one and "depth" in one
    assert "depth" not in two and "normals" not in two and "segm" in two
    batch = collate([ds[0], one, two], TASKS)
    assert batch["present"]["segm"].tolist() == [True, False, True]
    assert batch["present"]["depth"].tolist() == [True, True, False]
    assert torch.isnan(batch["targets"]["depth"][2]).all()


def test_headerless_two_column_list_reads_image_and_mask(tmp_path):
    """Like NYUD's train.nyu: 'image<TAB>mask', the mask a palette-mode PNG of class ids."""
    _write_rgb(tmp_path / "a.png", _rgb(0))
    ids = np.array([[0, 1, 2, 3, 4, 255, 1, 1]] * H, np.uint8)
    im = Image.new("P", (W, H))
    im.putdata(ids.ravel().tolist())
    palette = np.zeros((256, 3), np.uint8)
    palette[:5] = [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    palette[255] = [224, 224, 192]
    im.putpalette(palette.ravel().tolist())
    im.save(tmp_path / "a_mask.png")
    (tmp_path / "train.nyu").write_text("a.png\ta_mask.png\n")
    item = ListDataset(tmp_path / "train.nyu", TASKS)[0]
    np.testing.assert_array_equal(item["segm"].numpy(), ids.astype(np.int64))
    assert "depth" not in item


def test_colour_coded_segmentation_with_palette(tmp_path):
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    ids = np.array([[0, 1, 2, 1, 0, 2, 2, 1]] * H)
    _write_rgb(tmp_path / "a.png", _rgb(0))
    _write_rgb(tmp_path / "a_seg.png", palette[ids])
    bad = palette[ids].copy()
    bad[2, 3] = [1, 2, 3]
    _write_rgb(tmp_path / "b.png", _rgb(1))
    _write_rgb(tmp_path / "b_seg.png", bad)
    (tmp_path / "l.txt").write_text("a.png a_seg.png\nb.png b_seg.png\n")
    ds = ListDataset(tmp_path / "l.txt", TASKS, palette=palette)
    np.testing.assert_array_equal(ds[0]["segm"].numpy(), ids)
    with pytest.raises(DataError, match=r"b_seg\.png.*not in the palette"):
        ds[1]
    with pytest.raises(DataError, match=r"a_seg\.png.*palette"):
        ListDataset(tmp_path / "l.txt", TASKS)[0]  # a colour image without a palette


def _bad_folder(tmp_path):
    _write_rgb(tmp_path / "ok.png", _rgb(0))
    _write(tmp_path / "ok_d.png", np.full((H, W), 5000, np.uint16))
    _write(tmp_path / "small_d.png", np.full((H - 1, W), 5000, np.uint16))
    _write(tmp_path / "range_s.png", np.full((H, W), 7, np.uint8))  # 7 >= 5 classes
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return {
        "missing image": ("nope.png - ok_d.png", "nope.png", "not found"),
        "corrupt image": ("corrupt.png - ok_d.png", "corrupt.png", "cannot decode"),
        "missing depth": ("ok.png - gone_d.png", "gone_d.png", "not found"),
        "size mismatch": ("ok.png - small_d.png", "small_d.png", "does not match the size of the image"),
        "ids out of range": ("ok.png range_s.png ok_d.png", "range_s.png", "out of range"),
    }


def test_each_bad_input_raises_dataerror_naming_the_file(tmp_path):
    cases = _bad_folder(tmp_path)
    for name, (line, fname, problem) in cases.items():
        lst = tmp_path / f"{name.replace(' ', '_')}.txt"
        lst.write_text(line + "\n")
        with pytest.raises(DataError) as err:
            ListDataset(lst, TASKS)[0]
        assert fname in str(err.value) and problem in str(err.value), (name, str(err.value))
        if name == "size mismatch":  # either file may be the wrong one
            assert "ok.png" in str(err.value)


def test_bad_list_files(tmp_path):
    with pytest.raises(DataError, match="missing.txt.*not found"):
        ListDataset(tmp_path / "missing.txt", TASKS)
    (tmp_path / "wide.txt").write_text("a b c d e\n")
    with pytest.raises(DataError, match=r"wide\.txt:1: 5 columns"):
        ListDataset(tmp_path / "wide.txt", TASKS)
    (tmp_path / "empty.txt").write_text("# image depth\n")
    with pytest.raises(DataError, match="no samples"):
        ListDataset(tmp_path / "empty.txt", TASKS)


def test_skip_bad_counts_and_reports(tmp_path, caplog):
    cases = _bad_folder(tmp_path)
    lines = ["ok.png - ok_d.png"] + [line for line, _, _ in cases.values()] + ["ok.png - ok_d.png"]
    (tmp_path / "mixed.txt").write_text("\n".join(lines) + "\n")
    ds = ListDataset(tmp_path / "mixed.txt", TASKS, skip_bad=True)
    items = [ds[i] for i in range(len(ds))]
    assert all("depth" in it for it in items)  # every bad index answered with the next good one
    assert items[1]["id"] == "ok"
    assert len(ds.bad_samples) == 5
    with caplog.at_level(logging.WARNING, logger="hydranet.data"):
        text = ds.report()
    assert "skipped 5 bad sample(s) of 7" in text and "nope.png" in text
    assert "skipped 5" in caplog.text
    fresh = ListDataset(tmp_path / "mixed.txt", TASKS, skip_bad=True)
    assert len(fresh.scan()) == 5


def test_kitti_depth_and_crops(tmp_path):
    raw = np.zeros((H, W), np.uint16)
    raw[3, 4] = 256 * 12  # 12 m
    raw[4, 4] = 256 * 100  # 100 m: beyond the 80 m cap
    _write(tmp_path / "d.png", raw)
    _write_rgb(tmp_path / "i.png", _rgb(0))
    d = read_kitti_depth(tmp_path / "d.png")
    assert d.dtype == np.float32 and d[3, 4] == pytest.approx(12.0) and d[0, 0] == 0
    (tmp_path / "k.txt").write_text("# image depth\ni.png d.png\n")
    item = KittiDataset(tmp_path / "k.txt", TASKS)[0]
    assert item["depth"][0, 3, 4].item() == pytest.approx(12.0) and "segm" not in item

    h, w = 375, 1242
    garg = depth_crop_mask("garg", h, w).numpy()
    rows, cols = np.flatnonzero(garg.any(1)), np.flatnonzero(garg.any(0))
    assert (rows[0], rows[-1] + 1) == (int(0.40810811 * h), int(0.99189189 * h))
    assert (cols[0], cols[-1] + 1) == (int(0.03594771 * w), int(0.96405229 * w))
    eigen = depth_crop_mask("eigen", h, w).numpy()
    rows = np.flatnonzero(eigen.any(1))
    assert (rows[0], rows[-1] + 1) == (int(0.3324324 * h), int(0.91351351 * h))
    valid = (d > 1e-3) & (d < KITTI_MAX_DEPTH)  # what DepthMetrics counts with max_depth 80 (no crop)
    assert valid[3, 4] and not valid[4, 4] and not valid[0, 0] and KITTI_MAX_DEPTH == 80.0
