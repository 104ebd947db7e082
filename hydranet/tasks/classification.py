"""Image-level classification: N logits per image; labels are class ids (or names with a vocabulary)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from ..errors import DataError
from ..schema.types import Field
from .kind import INIT_CLASSES_HELP, SOFTMAX_UW, GlobalHeadOptions, InitClasses, TaskKind, per_sample, register_kind
from .segmentation import check_class_ids, check_class_weights


class ClassificationOptions(GlobalHeadOptions):
    """``options`` of a classification task."""

    init_classes: InitClasses = Field(None, description=INIT_CLASSES_HELP)


class Classification(TaskKind):
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

    def valid(self, spec, target, present) -> torch.Tensor:
        return (target != spec.ignore_index) & per_sample(present, target)

    def metrics(self, spec):
        from ..evaluation.metrics import ClassificationMetrics

        return ClassificationMetrics(spec)

    def to_average(self, spec, y):
        return y.softmax(1)  # probabilities are averaged, not logits

    def from_average(self, spec, average):
        return average.clamp_min(1e-12).log()  # softmax and argmax give the averaged probabilities back

    def postprocess(self, spec, y) -> list:
        from ..visualize import class_names_for

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
