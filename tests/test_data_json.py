"""JSON datasets: image-level targets, vocabularies shared between train and eval, clear errors."""

import json

import cv2
import numpy as np
import pytest
import torch

from hydranet.data import JsonDataset, build_vocab, collate, load_vocab, save_vocab
from hydranet.errors import ConfigError, DataError
from hydranet.tasks import TaskSpec

TASKS = [
    TaskSpec("company", "classification", classes=4),
    TaskSpec("model", "classification", classes=20),
    TaskSpec("diameter", "regression", outputs=1),
    TaskSpec("length", "regression", outputs=1),
]


@pytest.fixture
def files(tmp_path):
    for name in ("a", "b", "c"):
        assert cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.full((4, 6, 3), 100, np.uint8))
    train = [
        {"image": "a.jpg", "company": "zenith", "model": 17, "diameter": 4.2, "length": 30.0},
        {"image": "b.jpg", "company": "acme", "diameter": None, "length": 12},
        {"image": "c.jpg", "company": 3, "model": None},
    ]
    (tmp_path / "train.json").write_text(json.dumps(train))
    val = [{"image": "a.jpg", "company": "acme"}, {"image": "b.jpg", "company": "umbrella"}]
    (tmp_path / "val.json").write_text(json.dumps(val))
    return tmp_path


def test_targets_as_written_and_missing_absent(files):
    ds = JsonDataset(files / "train.json", TASKS)
    assert ds.vocab == {"company": ["acme", "zenith"], "model": []}
    a, b, c = ds[0], ds[1], ds[2]
    assert a["company"].dtype == torch.int64 and a["company"].shape == () and a["company"].item() == 1
    assert a["model"].item() == 17
    assert a["diameter"].dtype == torch.float32 and a["diameter"].shape == (1,)
    assert a["diameter"].item() == pytest.approx(4.2)
    assert b["company"].item() == 0 and "diameter" not in b and "model" not in b
    assert b["length"].item() == 12.0
    assert c["company"].item() == 3 and "model" not in c and "length" not in c
    assert a["image"].shape == (3, 4, 6)
    batch = collate([a, b, c], ds.tasks)
    assert batch["present"]["diameter"].tolist() == [True, False, False]
    assert batch["targets"]["model"].tolist() == [17, 255, 255]


def test_vocab_roundtrip_and_unknown_name(files):
    train = JsonDataset(files / "train.json", TASKS)
    save_vocab(train.vocab, files / "vocab.json")
    assert load_vocab(files / "vocab.json") == train.vocab
    val = JsonDataset(files / "val.json", TASKS, vocab=files / "vocab.json")
    assert val[0]["company"].item() == train[1]["company"].item() == 0
    with pytest.raises(DataError, match=r"val\.json record 1: unknown class name 'umbrella'"):
        val[1]


def test_build_vocab_uses_class_names_when_given():
    tasks = [TaskSpec("company", "classification", classes=2, class_names=("zeta", "alpha"))]
    assert build_vocab([{"image": "x", "company": "alpha"}], tasks) == {"company": ["zeta", "alpha"]}


def test_bad_json_inputs(files, tmp_path):
    with pytest.raises(DataError, match=r"nope\.json.*not found"):
        JsonDataset(tmp_path / "nope.json", TASKS)
    (tmp_path / "broken.json").write_text("[{")
    with pytest.raises(DataError, match=r"broken\.json: cannot read JSON"):
        JsonDataset(tmp_path / "broken.json", TASKS)
    (tmp_path / "noimage.json").write_text(json.dumps([{"company": 1}]))
    with pytest.raises(DataError, match=r"noimage\.json: record 0 has no 'image'"):
        JsonDataset(tmp_path / "noimage.json", TASKS)
    (tmp_path / "range.json").write_text(json.dumps([{"image": "a.jpg", "company": 9}]))
    with pytest.raises(DataError, match=r"range\.json record 0.*out of range"):
        JsonDataset(tmp_path / "range.json", TASKS)[0]
    (tmp_path / "text.json").write_text(json.dumps([{"image": "a.jpg", "diameter": "big"}]))
    with pytest.raises(DataError, match=r"text\.json record 0.*'diameter'"):
        JsonDataset(tmp_path / "text.json", TASKS)[0]
    (tmp_path / "noimg.json").write_text(json.dumps([{"image": "zzz.jpg"}]))
    with pytest.raises(DataError, match=r"zzz\.jpg.*not found"):
        JsonDataset(tmp_path / "noimg.json", TASKS)[0]
    many = [{"image": "a.jpg", "company": n} for n in "pqrst"]
    (tmp_path / "many.json").write_text(json.dumps(many))
    with pytest.raises(ConfigError, match="5 class names"):
        JsonDataset(tmp_path / "many.json", TASKS)
