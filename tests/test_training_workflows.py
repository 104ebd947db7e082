"""Training workflows: start from a model (train.init), freeze what you keep (train.freeze),
cached trunk features (train.cache_features), several data sets in one run."""

import json

import pytest
import torch
from test_known_models import _Server

import hydranet
from hydranet.config import load_config
from hydranet.data import build_dataset, make_collate
from hydranet.data.multi import MultiDataset, build_train_data, build_val_sets, largest_remainder
from hydranet.errors import ConfigError
from hydranet.evaluation import evaluate
from hydranet.tasks import parse_tasks
from hydranet.tools.evaluate import evaluate_checkpoint
from hydranet.training import Trainer, train
from hydranet.training.init import init_model
from hydranet.training.sampler import ResumableBatchSampler
from hydranet.weights import hub, load_original, synthetic_original_state_dict

NAMES = ["floor", "wall", "ceiling", "box", "cabinet", "ball", "cylinder", "table"]
SEGM = {"name": "segm", "kind": "segmentation", "classes": 8, "class_names": NAMES}
DEPTH = {"name": "depth", "kind": "depth", "options": {"max_depth": 10.0}}
NORMALS = {"name": "normals", "kind": "normals"}


def _data(n=16, seed=0, split="train", **extra):
    return {"type": "synthetic", "split": split, "num_samples": n, "size": [64, 64], "seed": seed, **extra}


def cfg(tasks, train_data=None, val_data=None, **train_opts):
    """A tiny network on 64x64 synthetic scenes; ``train_opts`` go to the train section."""
    return load_config(
        {
            "model": {"encoder": "mobilenet_v2", "encoder_options": {"width_mult": 0.35}, "width": 16},
            "tasks": tasks,
            "data": {
                "train": train_data or _data(transforms={"size": [64, 64], "hflip": 0.0}),
                **({"val": val_data} if val_data else {}),
            },
            "train": {
                "steps": 3,
                "batch_size": 4,
                "lr": 0.01,
                "warmup_steps": 0,
                "val_every": 100,
                "ckpt_every": 100,
                "plots": False,
                "tensorboard": False,
                "monitor": "loss",
                **train_opts,
            },
        }
    )


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models: one intra-op thread (see conftest.one_thread)."""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A segm + depth network trained a few steps (its BatchNorm statistics moved too)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("segm_depth")
    train(cfg([SEGM, DEPTH]), out, progress=False)
    torch.set_num_threads(threads)
    return out / "last.pt"


# --- train.init ---------------------------------------------------------------------------------


def test_init_from_checkpoint_reports_loaded_new_and_remapped(trained, tmp_path):
    segm3 = {"name": "segm", "kind": "segmentation", "classes": 3, "class_names": ["box", "wall", "sky"]}
    only_depth = _data(tasks=["depth", "normals"], transforms={"size": [64, 64], "hflip": 0.0})
    run = cfg([segm3, DEPTH, NORMALS], only_depth, init=str(trained), steps=1)
    trainer = Trainer(run, tmp_path / "run", progress=False)
    report = trainer.init_report
    src = hydranet.load_model(trained).state_dict()
    new = trainer.model.state_dict()
    assert report.skipped == [] and report.unused == []
    assert sorted(report.new) == sorted(k for k in new if k.startswith("heads.normals."))
    assert sorted(k for k, _ in report.remapped) == ["heads.segm.2.bias", "heads.segm.2.weight"]
    assert dict(report.remapped)["heads.segm.2.weight"].startswith("2 of 3 classes from the source's 8 (2 by name")
    for key in report.loaded:
        assert torch.equal(new[key], src[key]), key
    for key in ("heads.segm.2.weight", "heads.segm.2.bias"):  # box = source 3, wall = source 1
        assert torch.equal(new[key][0], src[key][3]) and torch.equal(new[key][1], src[key][1])
    torch.manual_seed(0)  # "sky" kept the fresh initialisation the trainer drew
    fresh = hydranet.build_model(run).state_dict()
    assert torch.equal(new["heads.segm.2.weight"][2], fresh["heads.segm.2.weight"][2])
    table = report.table()
    assert "heads.normals" in table and "remapped heads.segm.2.weight" in table
    trainer.fit()
    trainer.close()
    record = json.loads((tmp_path / "run" / "init.json").read_text())
    assert record["counts"] == {"loaded": len(report.loaded), "remapped": 2, "new": 3, "skipped": 0, "unused": 0}
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[0]["type"] == "init" and log[0]["new"] == 3


def test_init_explicit_class_map_skips_and_strict(trained):
    # no names: init_classes maps new 0 <- old 7 and new 1 <- old 2; a 2-output depth head is skipped
    segm2 = {"name": "segm", "kind": "segmentation", "classes": 2, "options": {"init_classes": {0: 7, 1: 2}}}
    count = {"name": "depth", "kind": "regression", "outputs": 2}
    torch.manual_seed(0)
    model = hydranet.build_model(cfg([segm2, count]))
    report = init_model(model, str(trained))
    src = hydranet.load_model(trained).state_dict()
    w = model.state_dict()["heads.segm.2.weight"]
    assert torch.equal(w[0], src["heads.segm.2.weight"][7]) and torch.equal(w[1], src["heads.segm.2.weight"][2])
    assert "0 by name, 2 by init_classes" in dict(report.remapped)["heads.segm.2.weight"]
    skipped = dict(report.skipped)
    assert "heads.depth.3.weight" not in skipped  # a GlobalHead: its tensors are not in the source
    assert report.new and all(k.startswith("heads.depth.") for k in report.new)
    with pytest.raises(ConfigError, match="init_classes.*source class id 9"):
        bad = {**segm2, "options": {"init_classes": {0: 9}}}
        init_model(hydranet.build_model(cfg([bad, DEPTH])), str(trained))
    depth_wide = {"name": "depth", "kind": "normals"}  # same head name, 3 outputs instead of 1
    model = hydranet.build_model(cfg([SEGM, depth_wide]))
    report = init_model(model, str(trained))
    assert sorted(k for k, _ in report.skipped) == ["heads.depth.2.bias", "heads.depth.2.weight"]
    assert "shape (1,) in the source, (3,) here" in dict(report.skipped)["heads.depth.2.bias"]
    with pytest.raises(ConfigError, match=r"init_strict: 2 tensor\(s\).*heads.depth.2"):
        init_model(hydranet.build_model(cfg([SEGM, depth_wide])), str(trained), strict=True)


def test_init_with_nothing_in_common_is_refused(trained):
    other = load_config(cfg([{**SEGM, "name": "labels"}, {**DEPTH, "name": "distance"}]))
    other["model"]["encoder"] = "resnet18"
    other["model"]["encoder_options"] = {}
    other["model"]["width"] = 24
    with pytest.raises(ConfigError, match="no tensor in common"):
        init_model(hydranet.build_model(other), str(trained))
    with pytest.raises(ConfigError, match="neither a file nor a known model name"):
        init_model(hydranet.build_model(other), "no-such-model")


def test_shipped_finetune_config_inits_by_known_name_from_a_local_server(tmp_path, monkeypatch):
    """``finetune_nyud13``: mtrn-nyud-joint (served from 127.0.0.1) -> 13 classes + a new normals head;
    the original file itself gives the same."""
    folder = tmp_path / "authors" / "weights"
    folder.mkdir(parents=True)
    original = folder / "ExpNYUD_joint.ckpt"
    torch.save({"state_dict": synthetic_original_state_dict(segm_classes=40, normals=False, seed=3)}, original)
    srv = _Server(folder.parent)
    try:
        monkeypatch.setenv("HYDRANET_MODEL_BASE_URL", srv.url)
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
        monkeypatch.setitem(
            hub.KNOWN_MODELS, "mtrn-nyud-joint", {"file": original.name, "git_blob": hub.git_blob_id(original)}
        )
        finetune = load_config("finetune_nyud13")
        assert finetune["train"]["init"] == "mtrn-nyud-joint"
        src = load_original(original).state_dict()
        for source in ("mtrn-nyud-joint", str(original)):
            model = hydranet.build_model(finetune)
            report = init_model(model, source)
            assert srv.served == ["/weights/ExpNYUD_joint.ckpt"]  # the name downloaded once
            assert report.skipped == [] and report.unused == []
            assert sorted(report.new) == sorted(k for k in model.state_dict() if k.startswith("heads.normals."))
            assert dict(report.remapped)["heads.segm.2.weight"] == (
                "13 of 13 classes from the source's 40 (10 by name, 3 by init_classes), 0 new"
            )
            state = model.state_dict()
            assert all(torch.equal(state[k], src[k]) for k in report.loaded)
            assert len(report.loaded) + 2 == len(src)  # all but the remapped class layer
            w, old = state["heads.segm.2.weight"], src["heads.segm.2.weight"]
            # wall (13-class id 11) = NYUD-40 id 0; tv (10) = television (24), by init_classes
            assert torch.equal(w[11], old[0]) and torch.equal(w[10], old[24]) and torch.equal(w[0], old[3])
        assert "converted from the original format" in report.source
    finally:
        srv.close()


# --- train.freeze ---------------------------------------------------------------------------------


def test_new_head_on_a_frozen_network_leaves_the_other_outputs_bit_identical(trained, tmp_path):
    frozen = ["encoder", "decoder", "heads.segm", "heads.depth"]
    run = cfg([SEGM, DEPTH, NORMALS], init=str(trained), freeze=frozen, steps=4, lr=0.05)
    trainer = Trainer(run, tmp_path / "run", progress=False)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    for name, p in trainer.model.named_parameters():
        assert (id(p) in in_optimizer) == name.startswith("heads.normals."), name
    before = trainer.model.state_dict()
    before = {k: v.clone() for k, v in before.items()}
    trainer.fit()
    trainer.close()
    trainer.model.train()  # frozen BatchNorm layers stay in eval mode
    bns = [m for n, m in trainer.model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    after = hydranet.load_model(tmp_path / "run" / "last.pt")
    source = hydranet.load_model(trained)
    assert not torch.equal(after.state_dict()["heads.normals.2.weight"], before["heads.normals.2.weight"])
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        new, old = after(images), source(images)
    assert torch.equal(new["segm"], old["segm"]) and torch.equal(new["depth"], old["depth"])


def test_freeze_path_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train.freeze\[1\]: 'heads.segmentation' matches no parameter.*heads.segm"):
        Trainer(cfg([SEGM, DEPTH], freeze=["encoder", "heads.segmentation"]), tmp_path / "x", progress=False)


# --- train.cache_features ---------------------------------------------------------------------------------


def test_cached_features_give_the_uncached_head_update(trained, tmp_path):
    common = dict(init=str(trained), freeze=["encoder", "decoder"], steps=3)
    runs = {}
    for cached in (False, True):
        out = tmp_path / str(cached)
        summary = train(cfg([SEGM, DEPTH], cache_features=cached, **common), out, progress=False)
        assert summary["status"] == "completed"
        runs[cached] = hydranet.load_model(out / "last.pt").state_dict()
    assert (tmp_path / "True" / "features" / "shared.npy").is_file()
    moved = False
    for key, value in runs[False].items():
        assert torch.allclose(value.float(), runs[True][key].float(), atol=1e-5, rtol=1e-4), key
        moved |= key.startswith("heads.") and not torch.equal(value, hydranet.load_model(trained).state_dict()[key])
    assert moved


def test_cache_features_names_what_prevents_it(trained, tmp_path):
    data = _data(transforms={"size": [64, 64]})
    with pytest.raises(ConfigError, match=r"decoder is not frozen.*transforms.hflip: 0.5 \(the default\)"):
        Trainer(cfg([SEGM, DEPTH], data, freeze=["encoder"], cache_features=True), tmp_path / "a", progress=False)
    small = cfg([SEGM, DEPTH], freeze=["encoder", "decoder"], cache_features=True, cache_max_gb=1e-6)
    with pytest.raises(ConfigError, match="above train.cache_max_gb"):
        train(small, tmp_path / "b", progress=False)


# --- several data sets ---------------------------------------------------------------------------------


def test_two_data_sets_sample_three_to_one_over_an_epoch():
    tasks = parse_tasks([SEGM, DEPTH])
    data = build_train_data(
        [{"name": "a", "weight": 3, **_data(12)}, {"name": "b", "weight": 1, "tasks": ["depth"], **_data(8, seed=1)}],
        tasks,
    )
    assert isinstance(data, MultiDataset) and len(data) == 20
    order = data.epoch_order(seed=0, epoch=0)
    assert len(order) == 20 and sum(i < 12 for i in order) == 15  # 3:1 of 20
    assert data.epoch_order(0, 0) == order and data.epoch_order(0, 1) != order
    assert (
        sorted(i for i in order if i >= 12) != [] and len(set(i for i in order if i < 12)) == 12
    )  # a: all, then 3 again
    sampler = ResumableBatchSampler(len(data), 5, seed=0, epoch=0, order=data.epoch_order)
    drawn = [i for batch in sampler for i in batch]
    assert sorted(drawn) == sorted(order)
    assert largest_remainder(7, [1, 1, 1]) == [3, 2, 2]
    item = data[12]  # a sample of b: depth only
    assert "depth" in item and "segm" not in item


def test_class_offsets_put_the_second_set_after_the_first(tmp_path):
    union = {"name": "segm", "kind": "segmentation", "classes": 16}
    tasks = parse_tasks([union, DEPTH])
    sets = [{"name": "a", **_data(4)}, {"name": "b", "class_offset": {"segm": 8}, **_data(4, seed=1)}]
    data = build_train_data(sets, tasks)
    plain = build_train_data(_data(4, seed=1), tasks)
    a, b = plain[0]["segm"], data[4]["segm"]
    valid = a != 255
    assert torch.equal(b[valid], a[valid] + 8) and torch.equal(b[~valid], a[~valid])
    assert data.members[0].ranges == {"segm": 8} and data.members[1].ranges == {"segm": 8}
    sets[0]["class_offset"] = {"segm": 8}
    with pytest.raises(ConfigError, match=r"data.train\[1\].class_offset.segm: 8 overlaps data.train\[0\]"):
        build_train_data(sets, tasks)
    with pytest.raises(ConfigError, match=r"data.train\[0\].weight: got 0; expected a value > 0"):
        build_train_data([{"weight": 0, **_data(4)}, _data(4)], tasks)
    with pytest.raises(ConfigError, match=r"data.train\[1\].weight: got -1"):  # the config's own check
        cfg([union, DEPTH], [_data(4), {"weight": -1, **_data(4)}])
    with pytest.raises(ConfigError, match="data.val.kiti: no training data set is named 'kiti'"):
        build_val_sets({"kiti": _data(4, split="val")}, tasks, train_cfg=[{"name": "a", **_data(4)}])


def test_per_set_validation_equals_each_set_alone(tmp_path):
    val = {"rooms": _data(6, split="val"), "more": {"tasks": ["depth"], **_data(5, seed=3, split="val")}}
    run = cfg([SEGM, DEPTH], val_data=val, monitor="more/depth/abs_rel")
    trainer = Trainer(run, tmp_path / "run", progress=False)
    result = trainer.validate()
    assert set(result["metrics"]) == {"rooms/segm", "rooms/depth", "more/depth"}

    tasks = parse_tasks([SEGM, DEPTH])
    for name, entry, labelled in (("rooms", val["rooms"], tasks), ("more", _data(5, seed=3, split="val"), tasks[1:])):
        alone = build_dataset(entry, tasks, train=False)
        loader = torch.utils.data.DataLoader(alone, batch_size=4, collate_fn=make_collate(tasks))
        trainer.model.eval()
        expected = evaluate(trainer.model, loader, labelled)
        for task, metrics in expected["metrics"].items():
            for metric, value in metrics.items():
                assert result["metrics"][f"{name}/{task}"][metric] == pytest.approx(value, abs=1e-6), (name, metric)
    assert trainer._monitored(result) == result["metrics"]["more/depth"]["abs_rel"]
    hydranet.save_model(trainer.model, tmp_path / "model.pt")  # hydranet eval reports the same sets
    again = evaluate_checkpoint(tmp_path / "model.pt", fast=False, progress=False, batch_size=4)
    assert again["samples"] == 11 and set(again["metrics"]) == set(result["metrics"])
    assert again["metrics"]["more/depth"]["rmse"] == pytest.approx(result["metrics"]["more/depth"]["rmse"], abs=1e-6)
    with pytest.raises(ConfigError, match="train.monitor: 'rooms/normals/mean'"):
        Trainer(cfg([SEGM, DEPTH], val_data=val, monitor="rooms/normals/mean"), tmp_path / "b", progress=False)


def test_shipped_nyudkitti_config_is_the_authors_joint_layout():
    joint = load_config("nyudkitti")
    (segm, depth) = joint["tasks"]
    assert segm["classes"] == 46 and depth["loss"] == "berhu"
    nyud, kitti = joint["data"]["train"]
    assert (nyud["name"], kitti["name"], kitti["class_offset"]) == ("nyud", "kitti", {"segm": 40})
    assert set(joint["data"]["val"]) == {"nyud", "kitti"} and joint["train"]["monitor"] == "nyud/segm/miou"
    # the same layout on synthetic stand-ins builds: KITTI's classes land on 40..45 of the union head
    stand_in = [
        {k: v for k, v in entry.items() if k in ("name", "weight", "tasks", "class_offset")} for entry in (nyud, kitti)
    ]
    data = build_train_data([{**e, **_data(4, seed=i)} for i, e in enumerate(stand_in)], parse_tasks(joint["tasks"]))
    assert data.members[1].offsets == {"segm": 40} and data.members[1].ranges == {"segm": 6}
    assert data.members[0].ranges == {"segm": 40}


def test_classification_head_remapped_by_class_name(tmp_path):
    names = ["cat", "dog", "bird", "fish"]
    old = {"name": "kind", "kind": "classification", "classes": 4, "class_names": names}
    new = {"name": "kind", "kind": "classification", "classes": 3, "class_names": ["fish", "horse", "cat"]}
    source = hydranet.build_model(cfg([DEPTH, old]))
    hydranet.save_model(source, tmp_path / "source.pt")
    target = hydranet.build_model(cfg([DEPTH, new]))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_model(target, tmp_path / "source.pt")
    (layer,) = [k for k, _ in report.remapped if k.endswith("weight")]
    w, src = target.state_dict()[layer], source.state_dict()[layer]
    assert layer.startswith("heads.kind.") and w.shape[0] == 3 and src.shape[0] == 4
    assert torch.equal(w[0], src[3]) and torch.equal(w[2], src[0]) and torch.equal(w[1], fresh[layer][1])
