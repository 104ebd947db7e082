"""Task kinds: every registered kind is complete, and a new kind needs one definition only.

The toy kind (a one-channel edge map) is one file, ``tests/edges_kind.py``, shaped like the
built-in kinds of ``hydranet/kinds/``; the test loads that file as ``hydranet.kinds.edges`` (a
kind added to the package, with no other change), then trains, evaluates, predicts, draws and
exports a network with an ``edges`` task through the same library code every built-in kind
goes through.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hydranet
from hydranet.data.io import write_png
from hydranet.evaluation.metrics import MetricAccumulator
from hydranet.tasks import KINDS, TaskKind, parse_task


@pytest.fixture
def edges_kind():
    """The toy kind's one file, loaded as a module of the built-in package (``hydranet.kinds.edges``),
    as if it had been added there: executing it registers it; nothing else names it."""
    name = "hydranet.kinds.edges"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("edges_kind.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module.EDGES
    del KINDS["edges"], sys.modules[name]


def _edge_dataset(root, n=6, size=32):
    """Images of a bright square on dark ground; the edge label marks its border."""
    lines = ["# image edges"]
    for i in range(n):
        img = np.full((size, size, 3), 30, np.uint8)
        a, b = 6 + i, 22 + i % 4
        img[a:b, a:b] = 220
        edge = np.zeros((size, size), np.uint8)
        edge[a:b, a:b] = 255
        edge[a + 1 : b - 1, a + 1 : b - 1] = 0
        write_png(root / f"i{i}.png", img)
        write_png(root / f"e{i}.png", edge)
        lines.append(f"i{i}.png e{i}.png")
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root / "list.txt"


def test_every_registered_kind_is_complete():
    spec_fields = {"segmentation": {"classes": 3}, "classification": {"classes": 3}, "regression": {"outputs": 2}}
    for name, kind in KINDS.items():
        assert isinstance(kind, TaskKind) and kind.name == name
        assert kind.losses and kind.default_metrics and kind.draw_role in (None, "overlay", "map")
        spec = parse_task({"name": "t", "kind": name, **spec_fields.get(name, {})})
        assert spec.channels >= 1 and spec.loss_name == kind.losses[0]
        fill = kind.fill(spec, 4, 5)
        assert not kind.valid(spec, fill[None], None).any(), name  # a missing label is never valid
        acc = kind.metrics(spec)
        assert isinstance(acc, MetricAccumulator) and acc.kind == name
        assert all(m in type(acc).DIRECTIONS for m in kind.default_metrics), name  # usable by train.monitor
        shape = (2, spec.channels, 4, 5) if kind.dense else (2, spec.channels)
        results = kind.postprocess(spec, torch.randn(shape))
        assert len(results) == 2
        # every method the library calls is implemented (the base class raises otherwise)
        for method in ("label_to_tensor", "fill", "valid", "metrics", "postprocess"):
            assert getattr(type(kind), method) is not getattr(TaskKind, method), (name, method)
        if kind.draw_role == "overlay":
            assert type(kind).colour_mask is not TaskKind.colour_mask
        if kind.draw_role == "map":
            assert type(kind).draw_map is not TaskKind.draw_map


def test_a_toy_kind_defined_in_one_place_trains_evaluates_predicts_and_exports(edges_kind, tmp_path, one_thread):
    from hydranet.inference import Predictor
    from hydranet.inference.export import export_onnx
    from hydranet.tools.evaluate import evaluate_checkpoint
    from hydranet.training import train

    lst = _edge_dataset(tmp_path)
    data = {"type": "list", "list": str(lst), "transforms": {"size": [32, 32], "hflip": 0.5}}
    cfg = {
        "model": {"encoder": "mobilenet_v2", "encoder_options": {"width_mult": 0.35}, "width": 16},
        "tasks": [{"name": "edges", "kind": "edges"}],
        "data": {"train": data, "val": {**data, "transforms": {"size": [32, 32]}}},
        "train": {
            "steps": 12,
            "batch_size": 3,
            "lr": 0.01,
            "val_every": 12,
            "ckpt_every": 12,
            "plots": False,
            "tensorboard": False,
            "warmup_steps": 0,
            "monitor": "edges/mae",
        },
        "loss": {"weighting": "uncertainty"},
    }
    torch.manual_seed(0)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["status"] == "completed"
    steps = [r for r in hydranet.training.logger.read_log(tmp_path / "run" / "log.jsonl") if r["type"] == "step"]
    assert steps[-1]["loss"]["edges"] < steps[0]["loss"]["edges"]  # it learns
    assert "edges" in steps[-1]["sigma2"]  # uncertainty-weighted

    with pytest.raises(hydranet.ConfigError, match="edges.*unknown metric 'iou'"):
        parse_task({"name": "edges", "kind": "edges", "metrics": ["iou"]})
    result = evaluate_checkpoint(tmp_path / "run" / "last.pt", progress=False, fast=False)
    assert result["metrics"]["edges"]["samples"] == 6 and 0 <= result["metrics"]["edges"]["mae"] < 1

    pred = Predictor(tmp_path / "run" / "last.pt").predict(np.zeros((40, 48, 3), np.uint8))
    assert pred["edges"].shape == (40, 48) and (0 <= pred["edges"]).all() and (pred["edges"] <= 1).all()
    figure = hydranet.visualize.render_figure(np.zeros((40, 48, 3), np.uint8), pred)
    assert figure.shape[0] == 40 and figure.shape[1] > 2 * 48  # input | edge map

    model = hydranet.load_model(tmp_path / "run" / "last.pt")
    report = export_onnx(model, tmp_path / "edges.onnx", size=(64, 64), check_sizes=[(64, 64), (45, 61)])
    assert report["outputs"] == ["edges"] and len(report["check"]) == 2
    assert all(c["max_rel"] < 1e-4 for c in report["check"])  # onnxruntime == PyTorch
