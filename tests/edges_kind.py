"""A toy task kind (a one-channel edge map) in one file, shaped like a built-in kind of
:mod:`hydranet.kinds`: its metric accumulator, the kind and one ``register_kind`` call.

``tests/test_task_kinds.py`` loads this file as ``hydranet.kinds.edges``, as if it had been
added to the package, and trains, evaluates, predicts, draws and exports it through the same
library code as every built-in kind. Added to ``hydranet/kinds/`` for good, the one other line
would be its import in the package's ``__init__.py`` (the registry entry).
"""

import numpy as np
import torch

from hydranet.data.io import read_image
from hydranet.evaluation.metrics import MetricAccumulator
from hydranet.tasks.kind import TaskKind, per_sample
from hydranet.tasks.registry import register_kind


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


EDGES = register_kind(Edges())
