"""Image-level classification: N logits per image; labels are class ids (or names with a vocabulary).

This module is the whole kind: its options, label values, metrics and results.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..errors import DataError
from ..evaluation.metrics import MetricAccumulator
from ..schema.types import Field
from ..tasks import TaskSpec
from ..tasks.kind import INIT_CLASSES_HELP, SOFTMAX_UW, ClassScoreKind, GlobalHeadOptions, InitClasses
from ..tasks.registry import register_kind
from ..visualize import class_names_for
from .segmentation import check_class_ids, check_class_weights


class ClassificationOptions(GlobalHeadOptions):
    """``options`` of a classification task."""

    init_classes: InitClasses = Field(None, description=INIT_CLASSES_HELP)


class ClassificationMetrics(MetricAccumulator):
    """Top-1 accuracy, and top-5 accuracy when the task has more than 5 classes.

    Only samples whose label is present (and not ``spec.ignore_index``) count.
    """

    kind = "classification"
    _state = ("correct", "count")
    DIRECTIONS = {"top1": "higher", "top5": "higher"}

    def __init__(self, spec: TaskSpec):
        self.topk = (1, 5) if spec.classes > 5 else (1,)
        super().__init__(spec)

    def _reset(self) -> None:
        self.correct = torch.zeros(len(self.topk), dtype=torch.int64)
        self.count = torch.zeros((), dtype=torch.int64)

    def update(self, pred, target, present=None) -> None:
        c = self.spec.classes
        target = target.reshape(-1)
        if pred.dim() != 2 or pred.shape[1] != c or pred.shape[0] != target.shape[0]:
            raise ValueError(
                f"task {self.name!r}: classification logits must be N x {c} for "
                f"N = {target.shape[0]} targets, got {tuple(pred.shape)}"
            )
        target, present = self._inputs_on_device(pred, target, present, torch.int64)
        valid = present & (target != self.spec.ignore_index)
        bad = valid & ((target < 0) | (target >= c))
        if bool(bad.any()):
            raise ValueError(f"task {self.name!r}: target class ids {target[bad].tolist()[:10]} are outside 0..{c - 1}")
        top = pred.detach().topk(max(self.topk), dim=1).indices  # N x kmax
        hit = top == target[:, None]
        self.correct += torch.stack([(hit[:, :k].any(dim=1) & valid).sum() for k in self.topk])
        self.count += valid.sum()
        self.samples += present.sum()

    def compute(self) -> dict:
        out: dict = {"samples": int(self.samples)}
        n = int(self.count)
        if n == 0:
            return out
        for k, c in zip(self.topk, self.correct.detach().cpu().tolist()):
            out[f"top{k}"] = c / n
        return out


class Classification(ClassScoreKind):
    name = "classification"
    dense = False
    size_field = "classes"
    losses = ("cross_entropy",)
    default_metrics = ("top1",)
    metric_names = ("top1", "top5")
    options_model = ClassificationOptions
    uw_form = SOFTMAX_UW
    vocabulary = True

    def check_spec(self, spec, where) -> None:
        check_class_weights(spec, where)

    def parse_value(self, spec, value: Any, where: str, vocabulary: Optional[dict] = None) -> int:
        """A class id from an integer (or integral number), or a class name of ``vocabulary[task]``."""
        if isinstance(value, str) and (vocabulary or {}).get(spec.name) is not None:
            index = vocabulary[spec.name]
            if value not in index:
                raise DataError(
                    f"{where}: unknown class name {value!r} for task {spec.name!r} (vocabulary has {len(index)} names)"
                )
            return index[value]
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                raise DataError(f"{where}: task {spec.name!r} value {value!r} is not an integer class id") from None
        if isinstance(value, (int, float, np.integer)) and not isinstance(value, bool) and float(value).is_integer():
            return int(value)
        raise DataError(f"{where}: task {spec.name!r} must be a class id or name, got {value!r}")

    def check_label(self, spec, value, image_hw, src) -> None:
        check_class_ids(np.asarray([value]), spec, src)

    def label_to_tensor(self, spec, value) -> torch.Tensor:
        return torch.tensor(int(value), dtype=torch.int64)

    def fill(self, spec, h, w) -> torch.Tensor:
        return torch.tensor(spec.ignore_index, dtype=torch.int64)

    def metrics(self, spec):
        return ClassificationMetrics(spec)

    def postprocess(self, spec, y) -> list:
        p, c = y.softmax(1).max(1)
        names = class_names_for(spec)
        return [
            {"class_id": int(ci), "name": names[ci], "probability": float(pi)}
            for pi, ci in zip(p.cpu().tolist(), c.cpu().tolist())
        ]

    def summarize(self, spec, value) -> dict:
        return dict(value)

    def describe(self, spec, summary) -> Optional[str]:
        return f"{spec.name}={summary['name']} ({summary['probability']:.2f})"


CLASSIFICATION = register_kind(Classification())
