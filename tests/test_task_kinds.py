"""Task kinds: every registered kind is complete, and a new kind needs one definition only.

The toy kind below (a one-channel edge map) is defined here and nowhere else; the test then
trains, evaluates, predicts and exports a network with an ``edges`` task through the same
library code every built-in kind goes through.
"""

import numpy as np
import pytest
import torch

import hydranet
from hydranet.data.io import write_png
from hydranet.evaluation.metrics import MetricAccumulator
from hydranet.tasks import KINDS, TaskKind, parse_task, register_kind
from hydranet.tasks.kind import per_sample

# --------------------------------------------------------------------- the toy kind, in one place


class EdgeMetrics(MetricAccumulator):
    """Mean absolute error of an edge probability map over labelled pixels."""

    kind = "edges"
    DIRECTIONS = {"mae": "lower"}
    _state = ("abs_sum", "count")

    def _reset(self):
        self.abs_sum = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, pred, target, present=None):
        target, present = self._dense_inputs(pred, target, present)
        valid = torch.isfinite(target) & per_sample(present, target)
        self.samples += int(present.sum())
        self.abs_sum += (pred.float().sigmoid() - target).abs()[valid].sum().double()
        self.count += int(valid.sum())

    def compute(self):
        out = {"samples": int(self.samples)}
        if int(self.count):
            out["mae"] = float(self.abs_sum / self.count)
        return out


class Edges(TaskKind):
    name = "edges"
    dense = True
    fixed_channels = 1
    losses = ("mse",)
    default_metrics = ("mae",)
    draw_role = "map"
    draw_priority = 5

    def read_label(self, spec, path, sources):
        from hydranet.data.io import read_image

        return read_image(path)[..., 0].astype(np.float32) / 255.0

    def label_to_tensor(self, spec, value):
        return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)[None])

    def fill(self, spec, h, w):
        return torch.full((1, h, w), float("nan"))

    def valid(self, spec, target, present):
        return torch.isfinite(target) & per_sample(present, target)

    def loss_target(self, spec, target):
        return target

    def metrics(self, spec):
        return EdgeMetrics(spec)

    def postprocess(self, spec, y):
        return list(y[:, 0].sigmoid().cpu().numpy())

    def draw_map(self, spec, value, style):
        grey = (np.clip(value, 0, 1) * 255).astype(np.uint8)
        return [np.repeat(grey[..., None], 3, axis=2)]


@pytest.fixture
def edges_kind():
    kind = register_kind(Edges())
    yield kind
    del KINDS["edges"]


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
    from hydranet.evaluation.run import evaluate_checkpoint
    from hydranet.inference import Predictor
    from hydranet.inference.export import export_onnx
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
