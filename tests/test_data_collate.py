"""Batching: missing labels are filled with invalid values and marked present=False."""

import pickle

import pytest
import torch

from hydranet.data import collate, make_collate
from hydranet.errors import DataError
from hydranet.tasks import TaskSpec

TASKS = [
    TaskSpec("segm", "segmentation", classes=4),
    TaskSpec("depth", "depth"),
    TaskSpec("normals", "normals"),
    TaskSpec("maker", "classification", classes=3),
    TaskSpec("size", "regression", outputs=2),
]


def _item(i, **labels):
    return {"image": torch.full((3, 4, 5), float(i)), "id": f"s{i}", **labels}


def test_collate_fills_missing_and_marks_present():
    a = _item(
        0,
        segm=torch.ones(4, 5, dtype=torch.int64),
        depth=torch.full((1, 4, 5), 2.0),
        maker=torch.tensor(2),
        size=torch.tensor([1.0, 2.0]),
    )
    b = _item(1, normals=torch.zeros(3, 4, 5))
    batch = collate([a, b], TASKS)
    assert batch["image"].shape == (2, 3, 4, 5)
    assert batch["ids"] == ["s0", "s1"]
    t, p = batch["targets"], batch["present"]
    assert set(t) == set(p) == {"segm", "depth", "normals", "maker", "size"}
    assert p["segm"].tolist() == [True, False] and p["normals"].tolist() == [False, True]
    assert p["depth"].dtype == torch.bool
    assert t["segm"].shape == (2, 4, 5) and t["segm"].dtype == torch.int64
    assert (t["segm"][1] == 255).all() and (t["segm"][0] == 1).all()
    assert t["depth"].shape == (2, 1, 4, 5) and torch.isnan(t["depth"][1]).all() and (t["depth"][0] == 2).all()
    assert t["normals"].shape == (2, 3, 4, 5) and torch.isnan(t["normals"][0]).all()
    assert t["maker"].tolist() == [2, 255] and t["maker"].dtype == torch.int64
    assert t["size"].shape == (2, 2) and torch.isnan(t["size"][1]).all()


def test_make_collate_is_picklable():
    fn = pickle.loads(pickle.dumps(make_collate(TASKS)))
    batch = fn([_item(0), _item(1)])
    assert not batch["present"]["segm"].any()


def test_collate_rejects_mixed_sizes():
    b = {"image": torch.zeros(3, 6, 5), "id": "big"}
    with pytest.raises(DataError, match="different sizes"):
        collate([_item(0), b], TASKS)
