"""build_dataset from config mappings, and a DataLoader with a worker process."""

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hydranet.data import JointTransform, KittiDataset, ListDataset, SyntheticScenes, build_dataset, make_collate
from hydranet.errors import ConfigError, DataError
from hydranet.tasks import TaskSpec

TASKS = [TaskSpec("segm", "segmentation", classes=8), TaskSpec("depth", "depth")]


def test_synthetic_defaults_follow_train_flag():
    train = build_dataset({"type": "synthetic", "num_samples": 4, "transforms": {"size": [24, 24]}}, TASKS, True)
    val = build_dataset({"type": "synthetic", "num_samples": 4, "size": [20, 28]}, TASKS, False)
    assert isinstance(train, SyntheticScenes) and train.split == "train" and train.size == (24, 24)
    assert val.split == "val" and val[0]["image"].shape == (3, 20, 28)
    assert isinstance(train.transform, JointTransform)
    assert set(train[0]) == {"image", "id", "segm", "depth"}


def test_list_and_kitti_types(tmp_path):
    assert cv2.imwrite(str(tmp_path / "i.png"), np.zeros((4, 4, 3), np.uint8))
    assert cv2.imwrite(str(tmp_path / "d.png"), np.full((4, 4), 512, np.uint16))
    (tmp_path / "l.txt").write_text("# image depth\ni.png d.png\n")
    ds = build_dataset({"type": "list", "list": str(tmp_path / "l.txt"), "depth_scale": 256}, TASKS, False)
    assert isinstance(ds, ListDataset) and ds[0]["depth"][0, 0, 0].item() == pytest.approx(2.0)
    k = build_dataset({"type": "kitti", "list": str(tmp_path / "l.txt")}, TASKS, False)
    assert isinstance(k, KittiDataset) and k[0]["depth"][0, 0, 0].item() == pytest.approx(2.0)


def test_config_errors():
    with pytest.raises(
        ConfigError, match="type: unknown data set type 'coco' .valid: synthetic, list, kitti, nyud_mat, json"
    ):
        build_dataset({"type": "coco"}, TASKS, True)
    with pytest.raises(ConfigError, match=r"data\.train\.list: missing"):
        build_dataset({"type": "list"}, TASKS, True)
    with pytest.raises(ConfigError, match=r"data\.train\.colour: unknown field"):
        build_dataset({"type": "synthetic", "colour": "red"}, TASKS, True)


@pytest.mark.parametrize(
    "cfg, field",
    [
        ({"type": "list", "list": "gone.txt"}, "data.val.list"),
        ({"type": "json", "json": "gone.json"}, "data.val.json"),
        ({"type": "nyud_mat", "mat": "gone.mat"}, "data.val.mat"),
        ({"type": "json", "json": "l.txt", "vocab": "gone.json"}, "data.val.vocab"),
    ],
)
def test_a_missing_file_names_the_field(tmp_path, monkeypatch, cfg, field):
    # found by `make fuzz`: a missing data.val.json named only the path, which may be any text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "l.txt").write_text("# image depth\n")
    with pytest.raises(DataError, match=rf"^{field}: the file 'gone\.\w+' does not exist$"):
        build_dataset(cfg, TASKS, False)


def test_dataloader_with_a_worker():
    ds = build_dataset(
        {"type": "synthetic", "num_samples": 4, "transforms": {"size": [16, 16], "scale": [0.8, 1.2], "hflip": 0.5}},
        TASKS,
        True,
    )
    loader = DataLoader(ds, batch_size=2, num_workers=1, collate_fn=make_collate(ds.tasks))
    batches = list(loader)
    assert len(batches) == 2
    assert batches[0]["image"].shape == (2, 3, 16, 16)
    assert batches[0]["targets"]["segm"].dtype == torch.int64 and batches[0]["present"]["depth"].all()


class _Same(torch.utils.data.Dataset):
    """Four copies of one sample, so any difference between items comes from augmentation."""

    def __init__(self, transform):
        self.transform = transform
        self.tasks = [TaskSpec("segm", "segmentation", classes=8)]
        rng = np.random.default_rng(0)
        self.raw = {
            "image": rng.integers(0, 256, (20, 20, 3), dtype=np.uint8),
            "id": "same",
            "segm": rng.integers(0, 8, (20, 20)),
        }

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.transform(dict(self.raw), self.tasks)


def test_workers_draw_different_augmentations():
    from hydranet.data import build_transforms

    ds = _Same(build_transforms({"size": [16, 16], "scale": [0.5, 2.0], "color_jitter": 0.3}, train=True))
    items = list(DataLoader(ds, batch_size=1, num_workers=2, collate_fn=make_collate(ds.tasks)))
    # items 0 and 1 are the first draws of workers 0 and 1: identical if the workers shared a seed
    assert not torch.equal(items[0]["image"], items[1]["image"])
