"""The valid starting point that the fuzzer and the hostile corpus damage: every shipped config
shrunk to a tiny model (width 8, 64x64, one step) reading tiny data files, a tiny checkpoint, a
two-step training run, an ONNX export, images, a list file, JSON records and eval results.

Each run gets its own copy (:func:`scene`) with relative paths, so that a failing command can be
repeated by hand from its folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import yaml
from support import tiny_config

import hydranet
from hydranet.checkpoint import save_model
from hydranet.data.io import write_png

SHIPPED = sorted(p.stem for p in (Path(hydranet.__file__).parent / "configs").glob("*.yaml"))
TINY_TRAIN = {
    "steps": 1,
    "batch_size": 2,
    "val_every": 1000,
    "ckpt_every": 1,
    "log_every": 1,
    "workers": 0,
    "plots": False,
    "tensorboard": False,
    "warmup_steps": 0,
}
# The tiny model's tasks: the synthetic set's (so `eval` runs on it), one of every kind.
TASKS = [
    {"name": "segm", "kind": "segmentation", "classes": 8},
    {"name": "depth", "kind": "depth", "options": {"max_depth": 10.0}},
    {"name": "normals", "kind": "normals"},
    {"name": "count", "kind": "regression", "outputs": 1, "options": {"target_mean": 3.5, "target_std": 1.5}},
    {"name": "dominant", "kind": "classification", "classes": 8},
]
SYNTHETIC_VAL = {"type": "synthetic", "num_samples": 4, "size": [64, 64], "seed": 0}
# records of image-level targets (the json_targets configs' tasks)
RECORDS = [
    {"image": "img.png", "company": 1, "model": 3, "diameter": 4.2, "length": 30.0},
    {"image": "img2.png", "company": 0, "model": 17, "diameter": 5.5, "length": 25.0},
    {"image": "img.png", "company": 2, "model": 0, "diameter": None, "length": 31.0},
    {"image": "img2.png", "company": 1, "model": 39, "diameter": 3.0},
]
RESULTS = {"segm": {"miou": 0.5, "pixel_acc": 0.8}, "depth": {"abs_rel": 0.2, "rmse": 0.7}}
BASELINE = {"segm": {"miou": 0.55, "pixel_acc": 0.82}, "depth": {"abs_rel": 0.18, "rmse": 0.66}}


def tiny_shipped(name: str) -> dict:
    """The shipped config ``name`` with a tiny model, the world's data files and one step."""
    cfg = yaml.safe_load((Path(hydranet.__file__).parent / "configs" / f"{name}.yaml").read_text())
    model = cfg["model"]
    model.update(encoder_weights=None, width=8)
    if model["encoder"].startswith("mobilenet"):
        model["encoder_options"] = {"width_mult": 0.35}
    elif model["encoder"].startswith("vit"):
        model["encoder_options"] = {**model.get("encoder_options", {}), "image_size": 64, "depth": 2, "width": 32}
        model["encoder_options"]["heads"] = 2
    for split in _data_sets(cfg.get("data", {})):
        kind = split["type"]
        if kind == "synthetic":
            split.update(num_samples=4, size=[64, 64])
        elif kind in ("list", "kitti"):
            split["list"] = "list.txt"
        elif kind == "json":
            split["json"] = "records.json"
        if "size" in split.get("transforms", {}):
            split["transforms"]["size"] = [64, 64]
    cfg["train"] = {**cfg.get("train", {}), **TINY_TRAIN}
    if "init" in cfg["train"]:  # fine-tuning starts from the world's checkpoint (no download)
        cfg["train"]["init"] = "tiny.pt"
        for task in cfg["tasks"]:
            task.get("options", {}).pop("init_classes", None)
    cfg["train"].pop("monitor", None) if name.startswith("json") else None
    return cfg


def _data_sets(data: dict) -> list:
    """Every data set of a data section: a split is one set, a list of sets (several in training)
    or a mapping of named sets (validation per set)."""
    found = []
    for split in data.values():
        if isinstance(split, list):
            found += split
        elif "type" in split:
            found.append(split)
        else:
            found += list(split.values())
    return found


def build_world(folder: Path) -> Path:
    """Write the world into ``folder`` (a few seconds: one model, one 2-step run, one export)."""
    from hydranet.inference.export import export_onnx
    from hydranet.training import train

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_png(folder / "img.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    write_png(folder / "img2.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    write_png(folder / "seg.png", rng.integers(0, 6, (64, 64), dtype=np.uint8))
    write_png(folder / "depth.png", rng.integers(1000, 20000, (64, 64), dtype=np.uint16))
    (folder / "frames").mkdir(exist_ok=True)
    for i in range(2):
        write_png(folder / "frames" / f"{i}.png", rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (folder / "list.txt").write_text(
        "# image segmentation depth\nimg.png seg.png depth.png\nimg2.png - -\nimg.png - depth.png\nimg.png seg.png -\n"
    )
    (folder / "records.json").write_text(json.dumps(RECORDS))
    (folder / "run.json").write_text(json.dumps({"metrics": RESULTS}))
    (folder / "base.json").write_text(json.dumps(BASELINE))
    for name in SHIPPED:
        (folder / f"cfg_{name}.yaml").write_text(yaml.safe_dump(tiny_shipped(name), sort_keys=False))
    (folder / "eval.yaml").write_text(yaml.safe_dump({"tasks": TASKS, "data": {"val": SYNTHETIC_VAL}}))

    torch.manual_seed(0)
    cfg = tiny_config(tasks=TASKS, width=8)
    model = hydranet.build_model(cfg, progress=False).eval()
    save_model(model, folder / "tiny.pt")
    # opset 17: the TorchScript-based exporter, seconds instead of the torch.export one's minute
    export_onnx(model, folder / "tiny.onnx", opset=17, size=(64, 64), check=False)
    train_cfg = {**cfg, "data": {"train": dict(SYNTHETIC_VAL), "val": dict(SYNTHETIC_VAL)}}
    train_cfg["train"] = {**TINY_TRAIN, "steps": 2}
    (folder / "train.yaml").write_text(yaml.safe_dump(train_cfg, sort_keys=False))
    train(train_cfg, folder / "run", progress=False)
    return folder


def scene(world: Path, folder: Path) -> Path:
    """A fresh copy of the world in ``folder`` (copied, not linked: a command that appends to a
    file in place must not change the next run's world)."""
    shutil.copytree(world, folder, dirs_exist_ok=True)
    return folder
