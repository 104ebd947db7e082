"""NYUDv2 from a tiny HDF5 file in the official layout (MATLAB v7.3: dimensions reversed)."""

import pickle

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from hydranet.data import NYUDv2Mat, load_mapping40, load_splits, nyud40_class_names
from hydranet.data.nyud import NYUD_DIR, load_mat
from hydranet.errors import ConfigError, DataError
from hydranet.tasks import TaskSpec

N, H, W = 6, 5, 7  # frames, rows, columns (the real file: 1449, 480, 640)
TASKS = [TaskSpec("segm", "segmentation", classes=40), TaskSpec("depth", "depth")]


def _matlab_arrays(seed=0):
    """The arrays as MATLAB holds them: images H x W x 3 x N, depths/labels H x W x N."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (H, W, 3, N), dtype=np.uint8)
    depths = rng.uniform(0.5, 9.5, (H, W, N)).astype(np.float32)
    labels = rng.integers(0, 895, (H, W, N)).astype(np.uint16)
    labels[0, 0, :] = 0  # unlabelled
    labels[0, 1, :] = 894
    return images, depths, labels


def _write_v73(path, arrays):
    """An HDF5 file as MATLAB v7.3 writes it: 512-byte MATLAB header, dimensions reversed."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for key, arr in arrays.items():
            f.create_dataset(key, data=np.ascontiguousarray(arr.transpose(tuple(range(arr.ndim))[::-1])))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .".ljust(116, b" ")
    header += b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)


@pytest.fixture
def nyud(tmp_path):
    images, depths, labels = _matlab_arrays()
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    _write_v73(mat, {"images": images, "depths": depths, "labels": labels})
    mapping = np.random.default_rng(1).integers(1, 41, 894)
    scipy.io.savemat(tmp_path / "classMapping40.mat", {"mapClass": mapping[None, :].astype(np.uint8)})
    scipy.io.savemat(
        tmp_path / "splits.mat",
        {"trainNdxs": np.array([[1], [3], [4]], np.uint16), "testNdxs": np.array([[2], [6]], np.uint16)},
    )
    return tmp_path, mat, (images, depths, labels), mapping


def test_official_layout_values(nyud):
    root, mat, (images, depths, labels), mapping = nyud
    with h5py.File(mat, "r") as f:  # the layout the official file has
        assert f["images"].shape == (N, 3, W, H) and f["depths"].shape == (N, W, H)
    ds = NYUDv2Mat(mat, "train", TASKS, mapping=root / "classMapping40.mat", splits=root / "splits.mat")
    assert len(ds) == 3
    item = ds[1]  # frame 3 (1-based), MATLAB column 2 (0-based)
    assert item["id"] == "000003"
    from hydranet.data import denormalize_image

    np.testing.assert_array_equal(denormalize_image(item["image"]), images[:, :, :, 2])
    assert item["depth"].shape == (1, H, W) and item["depth"].dtype == torch.float32
    np.testing.assert_allclose(item["depth"][0].numpy(), depths[:, :, 2])
    raw = labels[:, :, 2].astype(np.int64)
    expected = np.where(raw == 0, 255, mapping[np.maximum(raw, 1) - 1] - 1)
    assert item["segm"].dtype == torch.int64
    np.testing.assert_array_equal(item["segm"].numpy(), expected)
    assert item["segm"][0, 0] == 255 and item["segm"][0, 1] == mapping[893] - 1
    assert 0 <= item["segm"][item["segm"] != 255].min() and item["segm"][item["segm"] != 255].max() <= 39
    test = NYUDv2Mat(mat, "test", TASKS, mapping=root / "classMapping40.mat", splits=root / "splits.mat")
    assert [test.sample_id(i) for i in range(len(test))] == ["000002", "000006"]


def test_lazy_handle_and_pickling(nyud):
    root, mat, _, mapping = nyud
    ds = NYUDv2Mat(mat, "all", TASKS, mapping=root / "classMapping40.mat")
    assert ds._h5 is None  # nothing opened until an item is read
    first = ds[0]
    assert ds._h5 is not None
    clone = pickle.loads(pickle.dumps(ds))  # what a DataLoader worker receives
    assert clone._h5 is None
    torch.testing.assert_close(clone[0]["segm"], first["segm"])
    ds.close()


def test_user_mapping_formats(nyud, tmp_path):
    root, mat, _, mapping = nyud
    txt = tmp_path / "map.txt"
    np.savetxt(txt, mapping, fmt="%d")
    v73 = tmp_path / "map73.mat"
    _write_v73(v73, {"mapClass": mapping[None, :].astype(np.float64)})
    for source in (root / "classMapping40.mat", txt, v73):
        np.testing.assert_array_equal(load_mapping40(source), mapping)
    splits = load_splits(root / "splits.mat")
    assert splits["train"].tolist() == [1, 3, 4] and splits["test"].tolist() == [2, 6]


def test_missing_keys_and_bad_files(nyud, tmp_path):
    root, mat, (images, depths, _), _ = nyud
    no_labels = tmp_path / "no_labels.mat"
    _write_v73(no_labels, {"images": images, "depths": depths})
    with pytest.raises(DataError, match=r"no_labels\.mat: missing key 'labels'"):
        NYUDv2Mat(no_labels, "all", TASKS)
    scipy.io.savemat(tmp_path / "wrong.mat", {"something": np.ones(3)})
    with pytest.raises(DataError, match=r"wrong\.mat: missing key 'mapClass'"):
        load_mapping40(tmp_path / "wrong.mat")
    with pytest.raises(DataError, match=r"wrong\.mat: missing key 'trainNdxs'"):
        load_splits(tmp_path / "wrong.mat")
    with pytest.raises(DataError, match=r"absent\.mat.*not found"):
        NYUDv2Mat(tmp_path / "absent.mat", "train", TASKS)
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match=r"junk\.mat"):
        NYUDv2Mat(tmp_path / "junk.mat", "train", TASKS)
    with pytest.raises(DataError, match="outside the file's 6 frames"):
        NYUDv2Mat(mat, "train", TASKS)  # the shipped 795-frame split on a 6-frame file
    with pytest.raises(ConfigError, match="classes >= 40"):
        NYUDv2Mat(mat, "all", [TaskSpec("segm", "segmentation", classes=13)])


def test_shipped_mapping_and_splits():
    mapping = load_mapping40()
    assert mapping.shape == (894,) and mapping.min() == 1 and mapping.max() == 40
    splits = load_splits()
    assert len(splits["train"]) == 795 and len(splits["test"]) == 654
    both = np.concatenate([splits["train"], splits["test"]])
    assert sorted(both.tolist()) == list(range(1, 1450))
    names = nyud40_class_names()
    assert len(names) == 40 and names[:2] == ["wall", "floor"]
    assert len((NYUD_DIR / "mapping40.txt").read_text().split()) == 894


def test_load_mat_reads_v5_and_v73(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", {"x": np.arange(4)[None]})
    _write_v73(tmp_path / "b.mat", {"x": np.arange(4)[None].astype(np.float64)})
    assert load_mat(tmp_path / "a.mat", ["x"])["x"].ravel().tolist() == [0, 1, 2, 3]
    assert load_mat(tmp_path / "b.mat", ["x"])["x"].ravel().tolist() == [0, 1, 2, 3]


def test_prepare_script_roundtrip(nyud, tmp_path):
    """datasets/prepare_nyud.py writes PNGs + list files that ListDataset reads back."""
    import importlib.util
    from pathlib import Path

    from hydranet.data import ListDataset

    root, mat, (images, depths, labels), mapping = nyud
    script = Path(__file__).resolve().parents[1] / "datasets" / "prepare_nyud.py"
    spec = importlib.util.spec_from_file_location("prepare_nyud", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "out"
    rc = module.main(
        [
            "--mat",
            str(mat),
            "--out",
            str(out),
            "--mapping",
            str(root / "classMapping40.mat"),
            "--splits",
            str(root / "splits.mat"),
            "--no-progress",
        ]
    )
    assert rc == 0
    assert (out / "train.txt").read_text().splitlines()[0] == "# image segmentation depth"
    listed = ListDataset(out / "test.txt", TASKS, depth_scale=5000)
    direct = NYUDv2Mat(mat, "test", TASKS, mapping=root / "classMapping40.mat", splits=root / "splits.mat")
    assert len(listed) == len(direct) == 2
    for i in range(2):
        a, b = listed[i], direct[i]
        torch.testing.assert_close(a["image"], b["image"])
        torch.testing.assert_close(a["segm"], b["segm"])
        torch.testing.assert_close(a["depth"], b["depth"], atol=1e-4, rtol=0)  # 1/5000 m steps
    assert module.main(["--mat", str(tmp_path / "none.mat"), "--out", str(out)]) == 1
